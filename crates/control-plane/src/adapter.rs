//! One module per backend. Each module's doc names the contract section it implements.
pub mod audioroom;
pub mod distokoloshe;
pub mod livekit;
pub mod lk_jwt;
pub mod meet;
pub mod nip29;
pub mod token_endpoint;

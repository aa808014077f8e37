//! One module per backend. Each module's doc names the contract section it implements.

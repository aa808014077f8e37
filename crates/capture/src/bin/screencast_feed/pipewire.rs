//! The feed on PipeWire (Linux).

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use parley_capture::pattern::{HEIGHT, WIDTH, paint_bgrx};
use pipewire as pw;
use pw::spa;
use spa::pod::Pod;

const FPS: u32 = 30;
const STRIDE: u32 = WIDTH * 4;

pub(super) fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut arguments = std::env::args().skip(1);
    let mut name = "parley-test-screen".to_string();
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--name" => name = arguments.next().ok_or("--name needs a name")?,
            other => return Err(format!("unknown argument {other:?} (--name NAME)").into()),
        }
    }
    pw::init();
    let main_loop = pw::main_loop::MainLoopRc::new(None)?;
    let context = pw::context::ContextRc::new(&main_loop, None)?;
    let core = context.connect_rc(None)?;
    let stream = pw::stream::StreamRc::new(
        core,
        &name,
        pw::properties::properties! {
            *pw::keys::MEDIA_CLASS => "Video/Source",
            *pw::keys::MEDIA_TYPE => "Video",
            *pw::keys::MEDIA_CATEGORY => "Source",
            *pw::keys::MEDIA_ROLE => "Screen",
            *pw::keys::NODE_NAME => name.as_str(),
            *pw::keys::NODE_DESCRIPTION => name.as_str(),
        },
    )?;
    let announced = Rc::new(Cell::new(false));
    let painted = Rc::new(Cell::new(0u64));
    let _listener = stream
        .add_local_listener_with_user_data(())
        .state_changed(move |stream, _, _, state| {
            if matches!(state, pw::stream::StreamState::Paused | pw::stream::StreamState::Streaming)
                && !announced.replace(true)
            {
                println!("{{\"node\": {}}}", stream.node_id());
            }
            if let pw::stream::StreamState::Error(why) = state {
                eprintln!("parley-screencast-feed: the stream failed: {why}");
            }
        })
        .param_changed(|stream, (), id, param| {
            // Once a consumer's format is agreed, say what buffers the pictures need.
            if id != spa::param::ParamType::Format.as_raw() || param.is_none() {
                return;
            }
            match buffers_pod() {
                Ok(bytes) => {
                    if let Some(pod) = Pod::from_bytes(&bytes)
                        && let Err(error) = stream.update_params(&mut [pod])
                    {
                        eprintln!("parley-screencast-feed: buffer parameters: {error}");
                    }
                }
                Err(error) => eprintln!("parley-screencast-feed: buffer parameters: {error}"),
            }
        })
        .register()?;
    let format = format_pod()?;
    let mut params = [Pod::from_bytes(&format).ok_or("the format cannot be read back")?];
    stream.connect(
        spa::utils::Direction::Output,
        None,
        pw::stream::StreamFlags::DRIVER | pw::stream::StreamFlags::MAP_BUFFERS,
        &mut params,
    )?;
    // The desktop's clock: a picture every 1/30 s while someone is linked (a driver stream's
    // buffers come free only then).
    let ticking = stream.clone();
    let timer = main_loop.loop_().add_timer(move |_| {
        // Queued back (to the consumer) when `buffer` drops.
        let Some(mut buffer) = ticking.dequeue_buffer() else { return };
        let Some(data) = buffer.datas_mut().first_mut() else { return };
        if let Some(picture) = data.data() {
            paint_bgrx(painted.get(), picture, STRIDE as usize);
            painted.set(painted.get() + 1);
        }
        let chunk = data.chunk_mut();
        *chunk.offset_mut() = 0;
        *chunk.stride_mut() = STRIDE as i32;
        *chunk.size_mut() = STRIDE * HEIGHT;
    });
    let interval = Duration::from_secs(1) / FPS;
    timer.update_timer(Some(interval), Some(interval)).into_result()?;
    main_loop.run();
    Ok(())
}

/// What it offers: exactly 1280 × 720 BGRx at 30 fps.
fn format_pod() -> Result<Vec<u8>, spa::pod::serialize::GenError> {
    use spa::param::format::{FormatProperties, MediaSubtype, MediaType};
    use spa::param::video::VideoFormat;
    use spa::utils::{Fraction, Rectangle};
    let object = spa::pod::object!(
        spa::utils::SpaTypes::ObjectParamFormat,
        spa::param::ParamType::EnumFormat,
        spa::pod::property!(FormatProperties::MediaType, Id, MediaType::Video),
        spa::pod::property!(FormatProperties::MediaSubtype, Id, MediaSubtype::Raw),
        spa::pod::property!(FormatProperties::VideoFormat, Id, VideoFormat::BGRx),
        spa::pod::property!(FormatProperties::VideoSize, Rectangle, Rectangle { width: WIDTH, height: HEIGHT }),
        spa::pod::property!(FormatProperties::VideoFramerate, Fraction, Fraction { num: FPS, denom: 1 }),
    );
    serialize(object)
}

/// The buffers it fills: 2–16 of one picture each, in shared memory.
fn buffers_pod() -> Result<Vec<u8>, spa::pod::serialize::GenError> {
    use spa::pod::{ChoiceValue, Property, PropertyFlags, Value};
    use spa::utils::{Choice, ChoiceEnum, ChoiceFlags};
    let int = |key: u32, value: i32| Property { key, flags: PropertyFlags::empty(), value: Value::Int(value) };
    let object = spa::pod::Object {
        type_: spa::utils::SpaTypes::ObjectParamBuffers.as_raw(),
        id: spa::param::ParamType::Buffers.as_raw(),
        properties: vec![
            Property {
                key: spa::sys::SPA_PARAM_BUFFERS_buffers,
                flags: PropertyFlags::empty(),
                value: Value::Choice(ChoiceValue::Int(Choice(
                    ChoiceFlags::empty(),
                    ChoiceEnum::Range { default: 4, min: 2, max: 16 },
                ))),
            },
            int(spa::sys::SPA_PARAM_BUFFERS_blocks, 1),
            int(spa::sys::SPA_PARAM_BUFFERS_size, (STRIDE * HEIGHT) as i32),
            int(spa::sys::SPA_PARAM_BUFFERS_stride, STRIDE as i32),
            int(
                spa::sys::SPA_PARAM_BUFFERS_dataType,
                (1 << spa::sys::SPA_DATA_MemFd) | (1 << spa::sys::SPA_DATA_MemPtr),
            ),
        ],
    };
    serialize(object)
}

fn serialize(object: spa::pod::Object) -> Result<Vec<u8>, spa::pod::serialize::GenError> {
    let (cursor, _) = spa::pod::serialize::PodSerializer::serialize(
        std::io::Cursor::new(Vec::new()),
        &spa::pod::Value::Object(object),
    )?;
    Ok(cursor.into_inner())
}

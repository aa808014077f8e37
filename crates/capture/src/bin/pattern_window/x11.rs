//! The pattern window on an X server (Linux).

use std::time::{Duration, Instant};

use parley_capture::pattern::{BACKGROUND, COUNTER_BITS, HEIGHT, WIDTH, shapes};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    AtomEnum, ChangeGCAux, ConnectionExt as _, CreateGCAux, CreateWindowAux, PropMode, Rectangle, WindowClass,
};
use x11rb::wrapper::ConnectionExt as _;

const FPS: u64 = 30;

fn pixel([red, green, blue]: [u8; 3]) -> u32 {
    (u32::from(red) << 16) | (u32::from(green) << 8) | u32::from(blue)
}

fn rectangle(x: u32, y: u32, width: u32, height: u32) -> Rectangle {
    Rectangle { x: x as i16, y: y as i16, width: width as u16, height: height as u16 }
}

pub(super) fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut arguments = std::env::args().skip(1);
    let mut frames: Option<u64> = None;
    let mut log = false;
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--frames" => frames = Some(arguments.next().ok_or("--frames needs a number")?.parse()?),
            "--log" => log = true,
            other => return Err(format!("unknown argument {other:?} (--frames N, --log)").into()),
        }
    }
    let (connection, screen_number) = x11rb::connect(None)?;
    let screen = &connection.setup().roots[screen_number];
    let window = connection.generate_id()?;
    connection.create_window(
        screen.root_depth,
        window,
        screen.root,
        0,
        0,
        WIDTH as u16,
        HEIGHT as u16,
        0,
        WindowClass::INPUT_OUTPUT,
        screen.root_visual,
        &CreateWindowAux::new().background_pixel(pixel([BACKGROUND; 3])),
    )?;
    let title = b"Parley pattern";
    connection.change_property8(PropMode::REPLACE, window, AtomEnum::WM_NAME, AtomEnum::STRING, title)?;
    let utf8 = connection.intern_atom(false, b"UTF8_STRING")?.reply()?.atom;
    let net_name = connection.intern_atom(false, b"_NET_WM_NAME")?.reply()?.atom;
    connection.change_property8(PropMode::REPLACE, window, net_name, utf8, title)?;
    let gc = connection.generate_id()?;
    connection.create_gc(gc, window, &CreateGCAux::new().foreground(0))?;
    connection.map_window(window)?;
    connection.sync()?;
    println!("{{\"window\": {window}}}");

    let fill = |colour: [u8; 3], rectangles: &[Rectangle]| -> Result<(), Box<dyn std::error::Error>> {
        connection.change_gc(gc, &ChangeGCAux::new().foreground(pixel(colour)))?;
        connection.poly_fill_rectangle(window, gc, rectangles)?;
        Ok(())
    };
    let started = Instant::now();
    let mut frame: u64 = 0;
    while frames.is_none_or(|frames| frame < frames) {
        for (colour, [x, y, width, height]) in shapes(frame) {
            fill(colour, &[rectangle(x, y, width, height)])?;
        }
        let counter = (frame % (1 << COUNTER_BITS)) as u32;
        if log {
            // A round trip: the frame has been drawn when the X server answers.
            connection.sync()?;
            let unix_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|since| since.as_secs_f64() * 1000.0)
                .unwrap_or_default();
            println!("{{\"drawn\": {counter}, \"unix_ms\": {unix_ms:.1}}}");
        } else {
            connection.flush()?;
        }
        frame += 1;
        let next = started + Duration::from_nanos(frame * 1_000_000_000 / FPS);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    Ok(())
}

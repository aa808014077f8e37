//! What the window shows and what a user does in it, through WebDriver: the participant tiles
//! (`ParticipantTile.svelte`: a `button.tile` per remote participant, its `.name`, and the avatar
//! `[data-testid=speaking-ring]` whose `data-speaking` and `--level` draw the speaking ring), the
//! participant menu (`ParticipantMenu.svelte`) and the confirmation dialog (`Room.svelte`).

use std::time::{Duration, Instant};

use parley_devserver::webdriver::{Session, WebDriverError};
use serde_json::{Value, json};

/// A remote participant's tile as drawn.
#[derive(Debug, Clone)]
pub struct TileView {
    /// The tile's accessible label: name, role, `speaking`, marks (`muted`, `volume 50 %`).
    pub label: String,
    /// The ring is drawn (`data-speaking="true"` and the `speaking` class).
    pub speaking: bool,
    /// The ring's width, 0–1 (`--level`).
    pub level: f64,
    /// The muted mark is shown.
    pub muted_mark: bool,
    /// The "Live" mark (they share their screen) is shown.
    pub live_mark: bool,
}

/// Finds the tile whose name is `name`; `arguments[0]` is the name. Returns the button node.
const FIND_TILE: &str = "return Array.from(document.querySelectorAll('.tile')).find(\
    (tile) => tile.querySelector('.name')?.textContent.trim() === arguments[0]) ?? null;";

/// The tile of `name`, or `None` when the window does not list them.
pub fn tile(session: &Session, name: &str) -> Option<TileView> {
    let script = format!(
        "const tile = (() => {{ {FIND_TILE} }})(); if (!tile) return null; \
         const ring = tile.querySelector('[data-testid=speaking-ring]'); \
         return {{ label: tile.getAttribute('aria-label') ?? '', \
                  speaking: ring.dataset.speaking === 'true' && ring.classList.contains('speaking'), \
                  level: parseFloat(ring.style.getPropertyValue('--level') || '0'), \
                  muted: tile.querySelector('.mark[title=Muted]') !== null, \
                  live: tile.parentElement.querySelector('[data-testid=live-mark]')?.textContent.trim() === 'Live' }};"
    );
    let value =
        session.execute(&script, vec![json!(name)]).unwrap_or_else(|error| panic!("reading the tiles: {error}"));
    (!value.is_null()).then(|| TileView {
        label: value["label"].as_str().unwrap_or_default().to_string(),
        speaking: value["speaking"].as_bool().unwrap_or(false),
        level: value["level"].as_f64().unwrap_or(0.0),
        muted_mark: value["muted"].as_bool().unwrap_or(false),
        live_mark: value["live"].as_bool().unwrap_or(false),
    })
}

/// Waits until `name`'s tile satisfies `holds` (`None`: not listed); panics with `what` and the
/// last view after `timeout`.
pub fn wait_for_tile(
    session: &Session,
    name: &str,
    timeout: Duration,
    what: &str,
    holds: impl Fn(Option<&TileView>) -> bool,
) -> Option<TileView> {
    let deadline = Instant::now() + timeout;
    loop {
        let view = tile(session, name);
        if holds(view.as_ref()) {
            return view;
        }
        assert!(Instant::now() < deadline, "{what} within {} s; the tile shows {view:?}", timeout.as_secs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Right-clicks `name`'s tile (a real pointer event) and waits for its menu.
pub fn open_menu(session: &Session, name: &str) {
    let node = session.execute(FIND_TILE, vec![json!(name)]).unwrap_or_else(|error| panic!("finding {name}: {error}"));
    let element = session.element_from(&node).unwrap_or_else(|error| panic!("{name}'s tile should be listed: {error}"));
    session.pointer_click(&element, 2).unwrap_or_else(|error| panic!("right-clicking {name}: {error}"));
    let menu = session
        .wait_for(
            "const menu = document.querySelector('.menu[role=dialog] h3'); return menu ? menu.textContent : null;",
            Vec::new(),
            Duration::from_secs(5),
        )
        .unwrap_or_else(|error| panic!("reading the menu: {error}"));
    assert_eq!(menu, json!(name), "right-clicking {name}'s tile should open their menu");
}

/// Moves the menu's volume slider to `percent` as a user dragging it and letting go does: the
/// range's value changes, then `input` and `change` fire (WebDriver has no slider drag).
pub fn set_volume(session: &Session, percent: u32) -> Value {
    let script = "const range = document.querySelector('.menu[role=dialog] input[type=range]'); \
                  if (!range) return null; \
                  range.value = String(arguments[0]); \
                  range.dispatchEvent(new Event('input', { bubbles: true })); \
                  range.dispatchEvent(new Event('change', { bubbles: true })); \
                  return document.querySelector('.menu[role=dialog] output')?.textContent ?? '';";
    let shown =
        session.execute(script, vec![json!(percent)]).unwrap_or_else(|error| panic!("moving the slider: {error}"));
    assert!(!shown.is_null(), "the menu should hold a volume slider");
    shown
}

/// Clicks the menu item whose text starts with `label`.
pub fn click_menu_item(session: &Session, label: &str) {
    let script = "return Array.from(document.querySelectorAll('.menu[role=dialog] button')).find(\
                  (button) => button.textContent.trim().startsWith(arguments[0])) ?? null;";
    let node = session.execute(script, vec![json!(label)]).unwrap_or_else(|error| panic!("finding {label}: {error}"));
    let offered = menu_items(session);
    let element = session
        .element_from(&node)
        .unwrap_or_else(|_| panic!("the menu should offer {label:?}; it offers {offered:?}"));
    session.click(&element).unwrap_or_else(|error| panic!("clicking {label}: {error}"));
}

/// The texts of the menu's buttons.
pub fn menu_items(session: &Session) -> Value {
    session
        .execute(
            "return Array.from(document.querySelectorAll('.menu[role=dialog] button')).map((b) => b.textContent.trim());",
            Vec::new(),
        )
        .unwrap_or_else(|error| panic!("reading the menu: {error}"))
}

/// Waits for the confirmation dialog, checks its question and clicks its confirming button.
pub fn confirm(session: &Session, question_contains: &str) {
    let question = session
        .wait_for(
            "return document.querySelector('[role=alertdialog] p')?.textContent ?? null;",
            Vec::new(),
            Duration::from_secs(5),
        )
        .unwrap_or_else(|error| panic!("reading the dialog: {error}"));
    assert!(
        question.as_str().is_some_and(|text| text.contains(question_contains)),
        "a destructive action should ask first ({question_contains:?}), the dialog says {question}"
    );
    let button = session
        .find("[role=alertdialog] button.danger")
        .unwrap_or_else(|error| panic!("the dialog should have a confirming button: {error}"));
    session.click(&button).unwrap_or_else(|error| panic!("confirming: {error}"));
}

/// Clicks the Live mark beside `name`'s tile (it opens, or closes, their share's viewer).
pub fn click_live_mark(session: &Session, name: &str) {
    let script = format!(
        "const tile = (() => {{ {FIND_TILE} }})(); \
         return tile?.parentElement.querySelector('button[data-testid=live-mark]') ?? null;"
    );
    let node = session.execute(&script, vec![json!(name)]).unwrap_or_else(|error| panic!("finding the mark: {error}"));
    let mark = session.element_from(&node).unwrap_or_else(|_| panic!("{name}'s tile should have a Live button"));
    session.click(&mark).unwrap_or_else(|error| panic!("clicking the Live mark: {error}"));
}

/// Clicks the button `testid` of the share viewer of `identity`.
pub fn click_viewer_button(session: &Session, identity: &str, testid: &str) {
    let script = "return document.querySelector(`[data-testid=share-viewer][data-identity=\"${arguments[0]}\"] \
                  [data-testid=${arguments[1]}]`);";
    let node = session
        .execute(script, vec![json!(identity), json!(testid)])
        .unwrap_or_else(|error| panic!("finding {testid}: {error}"));
    let button = session.element_from(&node).unwrap_or_else(|_| panic!("the viewer should have {testid}"));
    match session.click(&button) {
        Ok(()) => {}
        // A pop-out's ✕ closes the window it is in, and WebKitWebDriver may answer the click
        // after the window is gone; the caller checks the window count for the outcome.
        Err(WebDriverError::Command { error, .. }) if testid == "share-close" && error == "no such window" => {}
        Err(error) => panic!("clicking {testid}: {error}"),
    }
}

/// Where a share viewer's picture is drawn, in CSS pixels of the window (`object-fit: contain`
/// inside its box), with the picture's size as received and whether the viewer fills the window.
#[derive(Debug, Clone, Copy)]
pub struct PictureView {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
    pub natural_width: u32,
    pub natural_height: u32,
    pub fills_window: bool,
}

/// The picture of `identity`'s share viewer, once one has loaded.
pub fn wait_for_picture(session: &Session, identity: &str, timeout: Duration) -> PictureView {
    // Where the shell paints the picture itself (`data-painted`), the page has no <img>: the
    // picture is fitted into the viewer's stage at the size received, which its label gives.
    let script = "const viewer = document.querySelector(`[data-testid=share-viewer][data-identity=\"${arguments[0]}\"]`); \
                  const stage = viewer?.querySelector('[data-testid=share-stage]'); \
                  const img = viewer?.querySelector('[data-testid=share-picture]'); \
                  const size = viewer?.querySelector('[data-testid=share-size]')?.textContent?.split('×').map(Number); \
                  let box, natural; \
                  if (stage?.dataset.painted === 'true') { \
                    if (!size) return null; \
                    box = stage.getBoundingClientRect(); natural = size; \
                  } else { \
                    if (!img || !img.complete || img.naturalWidth === 0) return null; \
                    box = img.getBoundingClientRect(); natural = [img.naturalWidth, img.naturalHeight]; \
                  } \
                  const scale = Math.min(box.width / natural[0], box.height / natural[1]); \
                  const width = natural[0] * scale, height = natural[1] * scale; \
                  const outer = viewer.getBoundingClientRect(); \
                  return { left: box.left + (box.width - width) / 2, top: box.top + (box.height - height) / 2, \
                           width, height, naturalWidth: size?.[0] ?? natural[0], naturalHeight: size?.[1] ?? natural[1], \
                           fills: Math.abs(outer.width - window.innerWidth) < 2 && Math.abs(outer.height - window.innerHeight) < 2 };";
    let value = session
        .wait_for(script, vec![json!(identity)], timeout)
        .unwrap_or_else(|error| panic!("reading the viewer: {error}"));
    assert!(!value.is_null(), "{identity}'s share should show a picture within {} s", timeout.as_secs());
    let number = |key: &str| value[key].as_f64().unwrap_or_else(|| panic!("{key} in {value}"));
    PictureView {
        left: number("left"),
        top: number("top"),
        width: number("width"),
        height: number("height"),
        natural_width: number("naturalWidth") as u32,
        natural_height: number("naturalHeight") as u32,
        fills_window: value["fills"].as_bool().unwrap_or(false),
    }
}

/// Whether any share viewer is open.
pub fn viewer_open(session: &Session) -> bool {
    let open = session
        .execute("return document.querySelector('[data-testid=share-viewer]') !== null;", Vec::new())
        .unwrap_or_else(|error| panic!("reading the viewers: {error}"));
    open == json!(true)
}

/// The call's received rate (kbit/s) the room header shows, once it shows one.
pub fn received_kbps(session: &Session) -> f64 {
    let value = session
        .wait_for(
            "return document.querySelector('[data-testid=bandwidth]')?.dataset.receivedKbps ?? null;",
            Vec::new(),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|error| panic!("reading the bandwidth: {error}"));
    value
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("the header should show the bandwidth: {value}"))
}

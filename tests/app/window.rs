//! What the window shows and what a user does in it, through WebDriver: the participant tiles
//! (`ParticipantTile.svelte`: a `button.tile` per remote participant, its `.name`, and the avatar
//! `[data-testid=speaking-ring]` whose `data-speaking` and `--level` draw the speaking ring), the
//! participant menu (`ParticipantMenu.svelte`) and the confirmation dialog (`Room.svelte`).

use std::time::{Duration, Instant};

use parley_devserver::webdriver::Session;
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
                  live: tile.querySelector('[data-testid=live-mark]')?.textContent.trim() === 'Live' }};"
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

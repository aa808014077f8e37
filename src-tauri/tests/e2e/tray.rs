//! The app's tray menu, reached the way a panel reaches it: over the session bus. The tray is an
//! Ayatana AppIndicator, which exports its menu as a `com.canonical.dbusmenu` object under
//! `/org/ayatana/NotificationItem/<id>/Menu`; a panel reads it with `GetLayout` and reports a
//! click with `Event(id, "clicked", …)`. Done with `dbus-send` on the test's private bus.

use std::process::Command;
use std::time::{Duration, Instant};

const ITEMS_ROOT: &str = "/org/ayatana/NotificationItem";

/// A tray menu found on the bus: who exports it, where, and its items (id, label, toggle state).
#[derive(Debug, Clone)]
pub struct TrayMenu {
    pub owner: String,
    pub path: String,
    pub items: Vec<(i32, String, Option<i32>)>,
}

/// Waits until some connection on `bus` exports an indicator menu, and reads it.
pub fn find_menu(bus: &str, timeout: Duration) -> TrayMenu {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(menu) = scan(bus) {
            return menu;
        }
        assert!(
            Instant::now() < deadline,
            "the app should export its tray menu on the session bus within {} s",
            timeout.as_secs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

impl TrayMenu {
    /// Re-reads the items.
    pub fn refresh(&self, bus: &str) -> TrayMenu {
        let items = layout(bus, &self.owner, &self.path).unwrap_or_default();
        TrayMenu { items, ..self.clone() }
    }

    /// The item whose label (without mnemonic underscores) is `label`.
    pub fn item(&self, label: &str) -> Option<(i32, Option<i32>)> {
        self.items.iter().find(|(_, text, _)| text.replace('_', "") == label).map(|(id, _, state)| (*id, *state))
    }

    /// Clicks the item labelled `label`, as a panel does.
    pub fn click(&self, bus: &str, label: &str) {
        let (id, _) =
            self.item(label).unwrap_or_else(|| panic!("the tray menu should have {label:?}: {:?}", self.items));
        let reply = dbus_send(
            bus,
            &self.owner,
            &self.path,
            "com.canonical.dbusmenu.Event",
            &[&format!("int32:{id}"), "string:clicked", "variant:int32:0", "uint32:0"],
        );
        assert!(reply.is_some(), "the tray menu should take a click on {label:?}");
    }
}

fn scan(bus: &str) -> Option<TrayMenu> {
    let names = dbus_send(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus.ListNames", &[])?;
    for owner in quoted(&names).into_iter().filter(|name| name.starts_with(':')) {
        let Some(tree) = dbus_send(bus, &owner, ITEMS_ROOT, "org.freedesktop.DBus.Introspectable.Introspect", &[])
        else {
            continue;
        };
        for node in child_nodes(&tree) {
            let path = format!("{ITEMS_ROOT}/{node}/Menu");
            if let Some(items) = layout(bus, &owner, &path).filter(|items| !items.is_empty()) {
                return Some(TrayMenu { owner, path, items });
            }
        }
    }
    None
}

/// `GetLayout(0, -1, [])`: every item with its properties; keeps id, label and toggle state.
fn layout(bus: &str, owner: &str, path: &str) -> Option<Vec<(i32, String, Option<i32>)>> {
    let reply = dbus_send(
        bus,
        owner,
        path,
        "com.canonical.dbusmenu.GetLayout",
        &["int32:0", "int32:-1", "array:string:label,toggle-state"],
    )?;
    // dbus-send prints each item as `struct { int32 <id> array [ dict entry( string "label"
    // variant string "<label>" ) … ] array [ variant struct { <children> } … ] }`: each piece
    // after a `struct {` holds one item's id and properties, up to its first child.
    let mut items = Vec::new();
    for piece in reply.split("struct {").skip(1) {
        let mut words = piece.split_whitespace();
        if words.next() != Some("int32") {
            continue;
        }
        let Some(id) = words.next().and_then(|id| id.parse::<i32>().ok()) else { continue };
        let label = piece.split("string \"label\"").nth(1).and_then(|rest| quoted(rest).into_iter().next());
        let state = piece
            .split("string \"toggle-state\"")
            .nth(1)
            .and_then(|rest| rest.split("int32").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse::<i32>().ok());
        if let Some(label) = label {
            items.push((id, label, state));
        }
    }
    Some(items)
}

fn dbus_send(bus: &str, destination: &str, path: &str, method: &str, args: &[&str]) -> Option<String> {
    let output = Command::new("dbus-send")
        .arg(format!("--bus={bus}"))
        .arg(format!("--dest={destination}"))
        .args(["--print-reply", "--reply-timeout=2000", path, method])
        .args(args)
        .output()
        .expect("running dbus-send (Debian package dbus-bin; run `cargo xtask setup`)");
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Every `"…"` string in `text`.
fn quoted(text: &str) -> Vec<String> {
    text.split('"').skip(1).step_by(2).map(str::to_string).collect()
}

/// The `name`s of `<node name="…"/>` children in introspection XML.
fn child_nodes(xml: &str) -> Vec<String> {
    xml.split("<node name=\"").skip(1).filter_map(|rest| rest.split('"').next()).map(str::to_string).collect()
}

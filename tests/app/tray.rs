//! The app's tray menu, reached the way a panel reaches it: over the session bus. The tray is an
//! Ayatana AppIndicator, which exports its menu as a `com.canonical.dbusmenu` object under
//! `/org/ayatana/NotificationItem/<id>/Menu`; a panel reads it with `GetLayout` and reports a
//! click with `Event(id, "clicked", …)`. Spoken with zbus on the test's private bus, typed: the
//! layout is read as the `(ia{sv}av)` tree the interface defines, not scraped from a tool's text.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use zbus::zvariant::{OwnedValue, Value};

const ITEMS_ROOT: &str = "/org/ayatana/NotificationItem";
const DBUSMENU: &str = "com.canonical.dbusmenu";
/// How long one call may take before the menu counts as not (yet) there.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

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
        if let Some(menu) = on_bus(bus, |connection| async move { scan(&connection).await }) {
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
        let items = on_bus(bus, |connection| async move { layout(&connection, &self.owner, &self.path).await })
            .unwrap_or_default();
        TrayMenu { items, ..self.clone() }
    }

    /// The item whose label (without mnemonic underscores) is `label`.
    pub fn item(&self, label: &str) -> Option<(i32, Option<i32>)> {
        self.items.iter().find(|(_, text, _)| text.replace('_', "") == label).map(|(id, _, state)| (*id, *state))
    }

    /// Clicks the item labelled `label`, as a panel does: `Event(id, "clicked", <int32 0>, 0)`.
    pub fn click(&self, bus: &str, label: &str) {
        let (id, _) =
            self.item(label).unwrap_or_else(|| panic!("the tray menu should have {label:?}: {:?}", self.items));
        let clicked = on_bus(bus, |connection| async move {
            let arguments = (id, "clicked", Value::from(0i32), 0u32);
            let call = connection.call_method(
                Some(self.owner.as_str()),
                self.path.as_str(),
                Some(DBUSMENU),
                "Event",
                &arguments,
            );
            tokio::time::timeout(CALL_TIMEOUT, call).await.ok()?.ok().map(|_| ())
        });
        assert!(clicked.is_some(), "the tray menu should take a click on {label:?}");
    }
}

/// Runs `work` with a connection to `bus` (an address) on a runtime of its own; `None` when
/// the bus cannot be reached or `work` finds nothing.
fn on_bus<T, F>(bus: &str, work: impl FnOnce(zbus::Connection) -> F) -> Option<T>
where
    F: std::future::Future<Output = Option<T>>,
{
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime for the bus calls");
    runtime.block_on(async {
        let connection = zbus::connection::Builder::address(bus).ok()?.build().await.ok()?;
        work(connection).await
    })
}

/// The first connection exporting an indicator with a non-empty menu.
async fn scan(connection: &zbus::Connection) -> Option<TrayMenu> {
    let names = zbus::fdo::DBusProxy::new(connection).await.ok()?.list_names().await.ok()?;
    for owner in names.iter().map(|name| name.to_string()).filter(|name| name.starts_with(':')) {
        let Some(nodes) = children(connection, &owner).await else { continue };
        for node in nodes {
            let path = format!("{ITEMS_ROOT}/{node}/Menu");
            if let Some(items) = layout(connection, &owner, &path).await.filter(|items| !items.is_empty()) {
                return Some(TrayMenu { owner, path, items });
            }
        }
    }
    None
}

/// The child nodes of `ITEMS_ROOT` on `owner` (one per indicator), from its introspection data.
async fn children(connection: &zbus::Connection, owner: &str) -> Option<Vec<String>> {
    let proxy = zbus::fdo::IntrospectableProxy::builder(connection)
        .destination(owner.to_string())
        .ok()?
        .path(ITEMS_ROOT)
        .ok()?
        .build()
        .await
        .ok()?;
    let xml = tokio::time::timeout(CALL_TIMEOUT, proxy.introspect()).await.ok()?.ok()?;
    let node = zbus_xml::Node::from_reader(xml.as_bytes()).ok()?;
    Some(node.nodes().iter().filter_map(|child| child.name().map(str::to_string)).collect())
}

/// `GetLayout(0, -1, ["label", "toggle-state"])`: every item with those properties, flattened.
async fn layout(connection: &zbus::Connection, owner: &str, path: &str) -> Option<Vec<(i32, String, Option<i32>)>> {
    let arguments = (0i32, -1i32, vec!["label", "toggle-state"]);
    let call = connection.call_method(Some(owner), path, Some(DBUSMENU), "GetLayout", &arguments);
    let reply = tokio::time::timeout(CALL_TIMEOUT, call).await.ok()?.ok()?;
    type Layout = (i32, HashMap<String, OwnedValue>, Vec<OwnedValue>);
    let (_revision, (_root, _properties, children)): (u32, Layout) = reply.body().deserialize().ok()?;
    let mut items = Vec::new();
    for child in &children {
        collect(child, &mut items);
    }
    Some(items)
}

/// Adds the item `value` (an `(ia{sv}av)` structure, maybe inside a variant) and its children.
fn collect(value: &Value<'_>, items: &mut Vec<(i32, String, Option<i32>)>) {
    let value = unwrap_variant(value);
    let Value::Structure(structure) = value else { return };
    let [Value::I32(id), Value::Dict(properties), Value::Array(children)] = structure.fields() else { return };
    let mut label = None;
    let mut state = None;
    for (key, property) in properties.iter() {
        match (unwrap_variant(key), unwrap_variant(property)) {
            (Value::Str(key), Value::Str(text)) if key.as_str() == "label" => label = Some(text.to_string()),
            (Value::Str(key), Value::I32(toggle)) if key.as_str() == "toggle-state" => state = Some(*toggle),
            _ => {}
        }
    }
    if let Some(label) = label {
        items.push((*id, label, state));
    }
    for child in children.iter() {
        collect(child, items);
    }
}

fn unwrap_variant<'a>(value: &'a Value<'a>) -> &'a Value<'a> {
    match value {
        Value::Value(inner) => unwrap_variant(inner),
        other => other,
    }
}

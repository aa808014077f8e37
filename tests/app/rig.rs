//! One test's world: a virtual display, a session bus with an unlocked keyring, a PulseAudio
//! with the app's speaker and microphone (null sinks), a LiveKit server, a config directory with
//! a `livekit` profile named `local` and the app's settings, and the app itself, started by
//! tauri-driver with a `parley://join/local/<room>` link. Nothing is shared between tests; a
//! missing piece fails the test with what to install.

use std::path::{Path, PathBuf};
use std::time::Duration;

use parley_contract_servers::portal::ShortcutsPortal;
use parley_devserver::display::{TauriDriver, Xvfb};
use parley_devserver::keyring::TestKeyring;
use parley_devserver::pulse::{NullSink, PulseServer};
use parley_devserver::webdriver::Session;
use parley_devserver::{DevServer, DevServerConfig};
use serde_json::json;

use crate::peer::parley;

/// The sink the app plays to, and the one whose monitor is its microphone.
pub const APP_SPEAKER: &str = "app_speaker";
pub const APP_MIC: &str = "app_mic";
/// A sink of the CLI peer's own, so that nothing it might play reaches the app's devices.
pub const PEER_SPEAKER: &str = "peer_speaker";
/// The profile the app joins through, and our identity in the room.
pub const PROFILE: &str = "local";
pub const APP_IDENTITY: &str = "host";
pub const ROOM: &str = "lobby";

/// How the app is set up before it starts (its `settings.toml`).
#[derive(Debug, Clone, Default)]
pub struct AppSetup {
    /// Push-to-talk on this accelerator instead of an open microphone.
    pub push_to_talk: Option<&'static str>,
    /// A first run: no server profile and no join link; the test adds the server in the window.
    pub first_run: bool,
    /// Leave WebKit's compositing switch alone, as users run the app (it then turns compositing
    /// off itself). Otherwise the rig keeps compositing on: WebKitWebDriver's screenshots never
    /// finish without it, so a test in this mode takes none.
    pub default_compositing: bool,
    /// The app believes it runs in a Wayland session (`XDG_SESSION_TYPE=wayland`; GTK stays on
    /// the X display) and finds the desktop's GlobalShortcuts portal on the session bus.
    pub wayland_portal: bool,
    /// A display twice as wide ([`WIDE_DISPLAY`]): room beside the app's windows for a window
    /// that is shared, so that what the X server shows of the app is the app's own picture.
    pub wide_display: bool,
}

/// The size of the display with [`AppSetup::wide_display`]; the app's windows open at its left.
pub const WIDE_DISPLAY: (u32, u32) = (2560, 800);

impl AppSetup {
    /// The settings file the app's `Client` reads at start: our null sinks as its devices, no
    /// cues (their sounds would land in the speaker recordings), the window shown.
    fn settings_toml(&self) -> String {
        let mut text = format!(
            "inputDevice = \"pulseaudio:{APP_MIC}.monitor\"\n\
             outputDevice = \"pulseaudio:{APP_SPEAKER}\"\n\
             cues = false\n\
             startMinimized = false\n"
        );
        match self.push_to_talk {
            Some(accelerator) => text.push_str(&format!(
                "transmitMode = \"push_to_talk\"\npttReleaseDelayMs = 0\n\n\
                 [shortcuts]\npushToTalk = \"{accelerator}\"\ntoggleMute = \"\"\ntoggleDeafen = \"\"\n"
            )),
            None => text.push_str("transmitMode = \"open_mic\"\n"),
        }
        text
    }
}

/// A running app and everything around it. Fields drop in order: the session first (the app
/// quits), then tauri-driver, the servers, the display and the files.
pub struct Rig {
    pub session: Session,
    pub driver: TauriDriver,
    /// The GlobalShortcuts portal, when the setup asked for Wayland.
    pub portal: Option<ShortcutsPortal>,
    pub server: DevServer,
    pub pulse: PulseServer,
    pub keyring: TestKeyring,
    pub display: Xvfb,
    /// Config, runtime and home directories, and recordings.
    pub dir: tempfile::TempDir,
    scenario: &'static str,
}

impl Rig {
    /// Starts everything and the app, clicks Join in the link's dialog and waits until the app
    /// shows itself connected to the room. `scenario` names the screenshots.
    pub fn start(scenario: &'static str, setup: &AppSetup) -> Rig {
        let rig = Rig::launch(scenario, setup);
        rig.accept_link();
        rig.wait_connected();
        rig
    }

    /// Waits for the dialog the join link opens (the app never joins from a link by itself)
    /// and clicks its Join button.
    pub fn accept_link(&self) {
        let found = self.session.wait_for(
            "return document.querySelector('[role=alertdialog] button.link-join');",
            Vec::new(),
            Duration::from_secs(30),
        );
        let node = found.unwrap_or_else(|error| panic!("reading the window: {error}"));
        let button = self.session.element_from(&node).unwrap_or_else(|_| {
            panic!("the link should open a dialog with a Join button; its log ends with:\n{}", self.driver.log_tail(40))
        });
        self.session.click(&button).unwrap_or_else(|error| panic!("clicking Join: {error}"));
    }

    /// Starts everything and the app (which opens its join link's dialog, unless it is a first run).
    pub fn launch(scenario: &'static str, setup: &AppSetup) -> Rig {
        let display =
            if setup.wide_display { Xvfb::start_sized(WIDE_DISPLAY.0, WIDE_DISPLAY.1) } else { Xvfb::start() };
        let display = display.unwrap_or_else(|error| panic!("a virtual display: {error}"));
        let keyring = TestKeyring::start().unwrap_or_else(|error| panic!("a session bus with a keyring: {error}"));
        let sinks = [NullSink::new(APP_SPEAKER, 2), NullSink::new(APP_MIC, 1), NullSink::new(PEER_SPEAKER, 2)];
        let pulse =
            PulseServer::start(&sinks).unwrap_or_else(|error| panic!("PulseAudio (run `cargo xtask setup`): {error}"));
        let server = DevServer::start(&DevServerConfig::default())
            .unwrap_or_else(|error| panic!("the LiveKit dev server (run `cargo xtask setup`): {error}"));
        let dir = tempfile::Builder::new().prefix("parley-app-e2e-").tempdir().expect("a scratch directory");
        for sub in ["config", "runtime", "xdg-config", "xdg-data", "xdg-cache"] {
            private_dir(&dir.path().join(sub));
        }
        let config = dir.path().join("config");
        if !setup.first_run {
            add_profile(&config, &keyring, &server);
        }
        std::fs::write(config.join("settings.toml"), setup.settings_toml()).expect("writing the app's settings");

        let library = parley_deps::Layout::discover().ffi_library();
        assert!(
            library.is_file(),
            "the LiveKit FFI library should be at {} (run `cargo xtask setup`)",
            library.display()
        );
        let mut env = display.env();
        env.extend(keyring.env());
        env.extend(pulse.env());
        let path = |sub: &str| dir.path().join(sub).display().to_string();
        env.extend([
            ("PARLEY_CONFIG_DIR".to_string(), config.display().to_string()),
            ("LIVEKIT_LIB_PATH".to_string(), library.display().to_string()),
            // The app's control socket and GTK's runtime files stay in this test.
            ("XDG_RUNTIME_DIR".to_string(), path("runtime")),
            ("XDG_CONFIG_HOME".to_string(), path("xdg-config")),
            ("XDG_DATA_HOME".to_string(), path("xdg-data")),
            ("XDG_CACHE_HOME".to_string(), path("xdg-cache")),
            ("GDK_BACKEND".to_string(), "x11".to_string()),
            // No accessibility bus on the private session bus; GTK need not look for one.
            ("NO_AT_BRIDGE".to_string(), "1".to_string()),
            ("XDG_SESSION_TYPE".to_string(), if setup.wayland_portal { "wayland" } else { "x11" }.to_string()),
        ]);
        if !setup.default_compositing {
            env.push(("WEBKIT_DISABLE_COMPOSITING_MODE".to_string(), "0".to_string()));
        }
        env.extend([
            ("PARLEY_LOG".to_string(), "info".to_string()),
            // A sign-in "opens the browser" into nothing: the tests play the browser themselves.
            ("BROWSER".to_string(), "true".to_string()),
        ]);
        let portal = setup.wayland_portal.then(|| {
            let (_, address) = keyring.env().into_iter().next().expect("the session bus address");
            ShortcutsPortal::start(&address).unwrap_or_else(|error| panic!("the shortcuts portal stand-in: {error}"))
        });
        let driver = TauriDriver::start(&env).unwrap_or_else(|error| panic!("tauri-driver: {error}"));
        let capabilities = json!({ "tauri:options": {
            "application": parley_e2e::app_binary(),
            "args": if setup.first_run { Vec::new() } else { vec![format!("parley://join/{PROFILE}/{ROOM}")] },
        }});
        let session = driver.webdriver().new_session(capabilities).unwrap_or_else(|error| {
            panic!("the app should start through WebDriver: {error}\nits log ends with:\n{}", driver.log_tail(40))
        });
        Rig { session, driver, portal, server, pulse, keyring, display, dir, scenario }
    }

    /// Waits until the window shows the call connected.
    pub fn wait_connected(&self) {
        let status = self.session.wait_for(
            "const status = document.querySelector('.room .status'); \
             return status && status.textContent === 'Connected' ? status.textContent : null;",
            Vec::new(),
            Duration::from_secs(30),
        );
        let status = status.unwrap_or_else(|error| panic!("reading the window: {error}"));
        assert!(
            status.is_string(),
            "the app should show itself connected to {ROOM} within 30 s of the join link; its log ends with:\n{}",
            self.driver.log_tail(40)
        );
    }

    /// Saves a screenshot as `<target>/app-e2e/<scenario>[-<suffix>].png`; returns its path.
    pub fn screenshot(&self, suffix: &str) -> PathBuf {
        let name = if suffix.is_empty() { self.scenario.to_string() } else { format!("{}-{suffix}", self.scenario) };
        let path = artifacts_dir().join(format!("{name}.png"));
        let bytes = self.session.save_screenshot(&path).unwrap_or_else(|error| panic!("a screenshot: {error}"));
        assert!(bytes > 1000, "the screenshot {} should hold a picture, got {bytes} bytes", path.display());
        path
    }

    /// What the X server shows of the window titled exactly `title`, as RGB rows, saved as
    /// `<scenario>-<suffix>-x11.png` too. Where the shell paints a share's picture itself,
    /// WebDriver's screenshots (the page's) do not have it; the window must not be covered.
    pub fn window_pixels(&self, title: &str, suffix: &str) -> (u32, u32, Vec<u8>) {
        use x11rb::protocol::xproto::{ConnectionExt as _, ImageFormat};
        let found = std::process::Command::new("xdotool")
            .args(["search", "--onlyvisible", "--name", &format!("^{title}$")])
            .envs(self.display.env())
            .output()
            .expect("running xdotool (Debian package xdotool; run `cargo xtask setup`)");
        let listed = String::from_utf8_lossy(&found.stdout);
        let window: u32 = listed
            .lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .unwrap_or_else(|| panic!("a window titled {title:?} should be shown: {listed:?}"));
        let name = self.display.env().into_iter().find(|(key, _)| key == "DISPLAY").map(|(_, value)| value);
        let (connection, _) = x11rb::connect(name.as_deref()).expect("connecting to the app's display");
        let geometry = connection.get_geometry(window).expect("asking").reply().expect("the window's size");
        let (width, height) = (u32::from(geometry.width), u32::from(geometry.height));
        let image = connection
            .get_image(ImageFormat::Z_PIXMAP, window, 0, 0, geometry.width, geometry.height, !0)
            .expect("asking")
            .reply()
            .expect("the window's pixels");
        assert_eq!(image.data.len(), width as usize * height as usize * 4, "a 32-bit picture of {width}x{height}");
        let rgb: Vec<u8> = image.data.chunks_exact(4).flat_map(|bgrx| [bgrx[2], bgrx[1], bgrx[0]]).collect();
        let path = artifacts_dir().join(format!("{}-{suffix}-x11.png", self.scenario));
        let file = std::fs::File::create(&path).expect("creating the capture's file");
        let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.write_header().and_then(|mut writer| writer.write_image_data(&rgb)).expect("writing the capture");
        (width, height, rgb)
    }

    /// The environment the running app process sees (`/proc/<pid>/environ`): the process whose
    /// program is the app and whose `PARLEY_CONFIG_DIR` is this rig's.
    pub fn app_environment(&self) -> Option<Vec<(String, String)>> {
        let app = std::fs::canonicalize(parley_e2e::app_binary()).ok()?;
        let ours = format!("PARLEY_CONFIG_DIR={}", self.dir.path().join("config").display());
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
            let exe = std::fs::read_link(entry.path().join("exe")).ok()?;
            if exe != app {
                return None;
            }
            let environ = std::fs::read(entry.path().join("environ")).ok()?;
            let variables: Vec<String> =
                environ.split(|&byte| byte == 0).map(|entry| String::from_utf8_lossy(entry).into_owned()).collect();
            variables.contains(&ours).then(|| {
                variables
                    .iter()
                    .filter_map(|variable| variable.split_once('='))
                    .map(|(key, value)| (key.to_string(), value.to_string()))
                    .collect()
            })
        })
    }

    /// The app's saved server profiles (`profiles.toml`) as they are now.
    pub fn profiles_file(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("config/profiles.toml")).expect("the app's profiles file")
    }

    /// The app's settings file as it is now.
    pub fn settings_file(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("config/settings.toml")).expect("the app's settings file")
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let path = artifacts_dir().join(format!("{}-failed.png", self.scenario));
            match self.session.save_screenshot(&path) {
                Ok(_) => eprintln!("screenshot of the failure: {}", path.display()),
                Err(error) => eprintln!("no screenshot of the failure: {error}"),
            }
            eprintln!("the app's log ends with:\n{}", self.driver.log_tail(60));
        }
    }
}

/// `<target dir>/app-e2e`: this test runs as `<target>/<profile>/deps/e2e-<hash>`.
pub fn artifacts_dir() -> PathBuf {
    parley_e2e::artifacts_dir("app-e2e")
}

/// `parley profile add local --backend livekit …` with the API secret through stdin into the
/// test's keyring, as a user would.
fn add_profile(config: &Path, keyring: &TestKeyring, server: &DevServer) {
    use std::io::Write as _;
    let mut child = parley()
        .args(["profile", "add", PROFILE, "--backend", "livekit", "--url", &server.url()])
        .args(["--api-key", server.api_key(), "--identity", APP_IDENTITY, "--secret-stdin"])
        .env("PARLEY_CONFIG_DIR", config)
        .envs(keyring.env())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting parley profile add");
    let mut stdin = child.stdin.take().expect("piped stdin");
    writeln!(stdin, "{}", server.api_secret()).expect("giving parley the secret");
    drop(stdin);
    let output = child.wait_with_output().expect("parley profile add");
    assert!(
        output.status.success(),
        "parley profile add should save the profile, got {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

fn private_dir(path: &Path) {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path).unwrap_or_else(|error| panic!("creating {}: {error}", path.display()));
}

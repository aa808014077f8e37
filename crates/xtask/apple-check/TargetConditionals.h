/* The one Apple SDK header ring's C code needs (for its TARGET_OS_* tests), so that clippy can
 * check the workspace for aarch64-apple-darwin on Linux, where there is no SDK. Only the cross
 * check (`cargo xtask test`) uses it; nothing it builds is linked or shipped. */
#define TARGET_OS_MAC 1
#define TARGET_OS_OSX 1
#define TARGET_OS_IPHONE 0
#define TARGET_OS_IOS 0
#define TARGET_OS_SIMULATOR 0

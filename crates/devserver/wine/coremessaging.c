/* A stand-in for Windows' CoreMessaging.dll, which Wine 8 lacks. Parley's Windows build imports
 * CreateDispatcherQueueController from it (windows-capture: Windows.Graphics.Capture runs its
 * frame callbacks on a dispatcher queue), so without it no Parley program even loads under Wine.
 * Wine has no Windows.Graphics.Capture either, so the queue could not serve anyway: the stand-in
 * answers "not implemented", and a screen share under Wine fails with a clear error while the
 * rest (calls, sound) runs. Built with mingw by the test rig and installed into the test's own
 * Wine prefix only; nothing that ships contains it. Written here because no package provides it. */
#include <windows.h>

HRESULT WINAPI CreateDispatcherQueueController(void *options, void **controller)
{
    (void)options;
    if (controller)
        *controller = NULL;
    return E_NOTIMPL;
}

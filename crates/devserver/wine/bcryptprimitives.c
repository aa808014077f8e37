/* A stand-in for Windows' bcryptprimitives.dll, which Wine 8 lacks and every Rust program for
 * Windows imports (the standard library asks it for random bytes through ProcessPrng). It is
 * built with mingw by the test rig and installed into the test's own Wine prefix only; nothing
 * that ships contains it. Written here because no package provides it: Wine 9 has its own. */
#include <windows.h>

/* RtlGenRandom is exported by advapi32 as SystemFunction036. */
BOOLEAN NTAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}

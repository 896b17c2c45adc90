/* A stand-in for Windows' bcryptprimitives.dll under Wine 8, which lacks
 * it: Rust's std (1.78+) imports ProcessPrng from it for its random
 * numbers (HashMap keys), and a program without it dies before main.
 * ProcessPrng fills the buffer from RtlGenRandom (advapi32's
 * SystemFunction036), which Wine has. Placed next to an .exe (the
 * application directory is searched first). Used only to run the Windows
 * build under Wine in CI: never shipped. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x7fffffff ? 0x7fffffff : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}

/*
 * fuseext.h - FUSE INIT flags that libfuse 3.14 cannot ask for, asked for by editing
 * its INIT reply on the way to the kernel (fuseext.c). Today one flag:
 * FUSE_DIRECT_IO_ALLOW_MMAP (kernel 6.6+), which lets a process map a direct-I/O file
 * (-o cache=none) shared; without it the kernel refuses mmap(MAP_SHARED) with ENODEV.
 */
#ifndef ISCSIFS_FUSEEXT_H
#define ISCSIFS_FUSEEXT_H

#include <stdbool.h>

struct fuse_session;

/* Route `se`'s /dev/fuse traffic through fuseext (fuse_session_custom_io) so that the
 * INIT reply asks for the flags above when the kernel offers them. Call after
 * fuse_session_mount() and before the session loop. 0, or -errno (the session then
 * works as before, without the flags). */
int fuseext_install(struct fuse_session *se);

/* The kernel accepted FUSE_DIRECT_IO_ALLOW_MMAP (valid once INIT is answered). */
bool fuseext_dio_mmap(void);

#endif

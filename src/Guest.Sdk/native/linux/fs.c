/*
 * fs.c: file descriptors and the few files a unikernel has.
 *
 *   fds 0, 1, 2       the console: output through the console_write hypercall, input from the console device's
 *                     ring (end of file at once when the host attached no console device)
 *   /dev/<disk>       each block device, as a file of the disk's size (pread/pwrite/lseek/fsync/fstat) on its ring
 *   /dev/null, /dev/zero, /dev/urandom, /dev/random
 *   /proc/self/exe    the application file (also readlink), /proc/self/maps, /proc/self/cmdline,
 *                     /proc/self/environ, /proc/meminfo, /sys/devices/system/cpu/{online,possible,present}
 *   pipes             pipe2 (in-memory, blocking)
 * Any other path does not exist (ENOENT), which is what runtimes probing /proc and /sys handle.
 */
#include "kernel.h"

#define MAX_FDS 1024
#define PIPE_SIZE 65536
#define BOUNCE_SIZE 65536

struct file;
struct file_ops {
    long (*read)(struct file *f, u64 buf, u64 len, u64 *pos);
    long (*write)(struct file *f, u64 buf, u64 len, u64 *pos);
    long (*stat)(struct file *f, struct linux_stat *st);
    void (*release)(struct file *f);
    short (*poll)(struct file *f);
    long (*fsync)(struct file *f);
    bool seekable;
};

struct pipe {
    u8 *buf;
    u32 head, count;
    int readers, writers;
};

struct blkfile {
    pv_blk dev;
    char name[24];
    bool opened;
    bool present;
};

struct file {
    int refs;
    const struct file_ops *ops;
    u32 flags;          /* O_ACCMODE | O_APPEND | O_NONBLOCK */
    u64 pos;
    u64 size;           /* memory files and disks */
    const u8 *data;     /* memory files */
    u8 *owned;          /* memory files generated at open (freed on release) */
    struct pipe *pipe;
    struct blkfile *blk;
    u32 mode;           /* st_mode */
    u64 ino;
};

struct fdent {
    struct file *file;
    bool cloexec;
};

static struct fdent fds[MAX_FDS];
static u8 *bounce;        /* BOUNCE_SIZE bytes, guest-physically contiguous */

/* ---- console ------------------------------------------------------------------------------------------------------- */

static pv_cons console;
static bool console_attached;
static u8 cons_buf[4096];
static u32 cons_head, cons_count;
static bool cons_eof;     /* the host flagged the end of its input and the driver has handed over every byte */
static char console_channel;
static int console_readers;

void fs_poll_console(void)
{
    if (!console_attached) {
        return;
    }
    bool got = false;
    while (cons_count < sizeof(cons_buf)) {
        u32 tail = (cons_head + cons_count) % sizeof(cons_buf);
        u32 room = MIN((u32)sizeof(cons_buf) - cons_count, (u32)sizeof(cons_buf) - tail);
        long n = pv_cons_read(&console, cons_buf + tail, room);
        if (n == PV_CONS_EOF) {
            if (!cons_eof) {
                cons_eof = true;
                got = true; /* wake readers: they return end-of-file once the buffer is empty */
            }
            break;
        }
        if (n <= 0) {
            break;
        }
        cons_count += (u32)n;
        got = true;
    }
    if (got) {
        wake_channel(&console_channel, -1);
    }
}

u64 fs_wait_events(void)
{
    if (console_attached && console_readers > 0) {
        return 1ull << console.port;
    }
    return 0;
}

void fs_events(u64 pending)
{
    if (console_attached && (pending & (1ull << console.port))) {
        fs_poll_console();
    }
}

static long console_read(struct file *f, u64 buf, u64 len, u64 *pos)
{
    UNUSED(pos);
    if (len == 0) {
        return 0;
    }
    if (!console_attached) {
        return 0; /* no console device: standard input is empty */
    }
    for (;;) {
        fs_poll_console();
        if (cons_count > 0) {
            u64 n = MIN(len, (u64)cons_count);
            u64 first = MIN(n, (u64)sizeof(cons_buf) - cons_head);
            if (copy_to_user(buf, cons_buf + cons_head, first) < 0 ||
                (n > first && copy_to_user(buf + first, cons_buf, n - first) < 0)) {
                return -EFAULT;
            }
            cons_head = (u32)((cons_head + n) % sizeof(cons_buf));
            cons_count -= (u32)n;
            return (long)n;
        }
        if (f->flags & O_NONBLOCK) {
            return -EAGAIN;
        }
        if (cons_eof) {
            return 0; /* end of file: the host's input ended (ConsoleInputFlags.EndOfInput) and all of it was read */
        }
        console_readers++;
        int why = block_current(&console_channel, UINT64_MAX);
        console_readers--;
        if (why == WAKE_SIGNAL) {
            return -ERESTARTSYS;
        }
    }
}

static long console_write(struct file *f, u64 buf, u64 len, u64 *pos)
{
    UNUSED(f);
    UNUSED(pos);
    u64 done = 0;
    while (done < len) {
        u64 n = MIN(len - done, (u64)BOUNCE_SIZE);
        if (copy_from_user(bounce, buf + done, n) < 0) {
            return done > 0 ? (long)done : -EFAULT;
        }
        long w = pv_console_write(bounce, n);
        if (w < 0) {
            return done > 0 ? (long)done : -EIO;
        }
        done += n;
    }
    return (long)done;
}

static long console_stat(struct file *f, struct linux_stat *st)
{
    UNUSED(f);
    st->st_mode = S_IFCHR | 0620;
    st->st_rdev = (5u << 8) | 1u; /* like /dev/console */
    st->st_blksize = 4096;
    return 0;
}

static short console_poll(struct file *f)
{
    short ev = POLLOUT;
    if ((f->flags & O_ACCMODE) != O_WRONLY) {
        fs_poll_console();
        if (cons_count > 0 || cons_eof || !console_attached) {
            ev |= POLLIN;
        }
    }
    return ev;
}

static const struct file_ops console_ops = {
    .read = console_read, .write = console_write, .stat = console_stat, .poll = console_poll,
};

/* ---- memory files (procfs, sysfs, the application file) ---------------------------------------------------------- */

static long mem_read(struct file *f, u64 buf, u64 len, u64 *pos)
{
    if (*pos >= f->size) {
        return 0;
    }
    u64 n = MIN(len, f->size - *pos);
    if (copy_to_user(buf, f->data + *pos, n) < 0) {
        return -EFAULT;
    }
    *pos += n;
    return (long)n;
}

static long readonly_write(struct file *f, u64 buf, u64 len, u64 *pos)
{
    UNUSED(f); UNUSED(buf); UNUSED(len); UNUSED(pos);
    return -EBADF;
}

static long mem_stat(struct file *f, struct linux_stat *st)
{
    st->st_mode = f->mode;
    st->st_size = (f->mode & S_IFMT) == S_IFREG && f->owned == NULL ? (i64)f->size : 0; /* procfs files say 0 */
    st->st_blksize = 4096;
    st->st_blocks = (i64)((f->size + 511) / 512);
    return 0;
}

static void mem_release(struct file *f) { kfree(f->owned); }

static short always_ready(struct file *f) { UNUSED(f); return POLLIN | POLLOUT; }

static const struct file_ops mem_ops = {
    .read = mem_read, .write = readonly_write, .stat = mem_stat, .release = mem_release, .poll = always_ready,
    .seekable = true,
};

/* /dev/null, /dev/zero, /dev/urandom */
static long null_read(struct file *f, u64 buf, u64 len, u64 *pos) { UNUSED(f); UNUSED(buf); UNUSED(len); UNUSED(pos); return 0; }
static long sink_write(struct file *f, u64 buf, u64 len, u64 *pos) { UNUSED(f); UNUSED(buf); UNUSED(pos); return (long)len; }
static long zero_read(struct file *f, u64 buf, u64 len, u64 *pos)
{
    UNUSED(f); UNUSED(pos);
    return clear_user(buf, len) < 0 ? -EFAULT : (long)len;
}
/* Fills len bytes of user memory with the host's randomness (read(/dev/urandom) and getrandom): the byte count, or
 * -EIO/-EFAULT when nothing was written. */
long random_to_user(u64 buf, u64 len)
{
    u64 done = 0;
    while (done < len) {
        u64 n = MIN(len - done, 4096ull);
        if (host_random(bounce, n) < 0) {
            return done ? (long)done : -EIO;
        }
        if (copy_to_user(buf + done, bounce, n) < 0) {
            return done ? (long)done : -EFAULT;
        }
        done += n;
    }
    return (long)done;
}
static long random_read(struct file *f, u64 buf, u64 len, u64 *pos)
{
    UNUSED(f); UNUSED(pos);
    return random_to_user(buf, len);
}
static long chardev_stat(struct file *f, struct linux_stat *st)
{
    st->st_mode = S_IFCHR | 0666;
    st->st_rdev = f->ino;
    st->st_blksize = 4096;
    return 0;
}
static const struct file_ops null_ops = { .read = null_read, .write = sink_write, .stat = chardev_stat, .poll = always_ready, .seekable = true };
static const struct file_ops zero_ops = { .read = zero_read, .write = sink_write, .stat = chardev_stat, .poll = always_ready, .seekable = true };
static const struct file_ops random_ops = { .read = random_read, .write = sink_write, .stat = chardev_stat, .poll = always_ready, .seekable = true };

/* ---- pipes --------------------------------------------------------------------------------------------------------- */

static long pipe_read(struct file *f, u64 buf, u64 len, u64 *pos)
{
    UNUSED(pos);
    struct pipe *p = f->pipe;
    if (len == 0) {
        return 0;
    }
    while (p->count == 0) {
        if (p->writers == 0) {
            return 0;
        }
        if (f->flags & O_NONBLOCK) {
            return -EAGAIN;
        }
        if (block_current(p, UINT64_MAX) == WAKE_SIGNAL) {
            return -ERESTARTSYS;
        }
    }
    u64 n = MIN(len, (u64)p->count);
    u64 first = MIN(n, (u64)PIPE_SIZE - p->head);
    if (copy_to_user(buf, p->buf + p->head, first) < 0 || (n > first && copy_to_user(buf + first, p->buf, n - first) < 0)) {
        return -EFAULT;
    }
    p->head = (u32)((p->head + n) % PIPE_SIZE);
    p->count -= (u32)n;
    wake_channel(p, -1);
    return (long)n;
}

static long pipe_write(struct file *f, u64 buf, u64 len, u64 *pos)
{
    UNUSED(pos);
    struct pipe *p = f->pipe;
    u64 done = 0;
    while (done < len) {
        if (p->readers == 0) {
            signal_send_thread(current, SIGPIPE);
            return done ? (long)done : -EPIPE;
        }
        if (p->count == PIPE_SIZE) {
            if (f->flags & O_NONBLOCK) {
                return done ? (long)done : -EAGAIN;
            }
            if (block_current(p, UINT64_MAX) == WAKE_SIGNAL) {
                return done ? (long)done : -ERESTARTSYS;
            }
            continue;
        }
        u32 tail = (p->head + p->count) % PIPE_SIZE;
        u64 n = MIN(len - done, (u64)(PIPE_SIZE - p->count));
        n = MIN(n, (u64)(PIPE_SIZE - tail));
        if (copy_from_user(p->buf + tail, buf + done, n) < 0) {
            return done ? (long)done : -EFAULT;
        }
        p->count += (u32)n;
        done += n;
        wake_channel(p, -1);
    }
    return (long)done;
}

static long pipe_stat(struct file *f, struct linux_stat *st)
{
    UNUSED(f);
    st->st_mode = S_IFIFO | 0600;
    st->st_blksize = 4096;
    return 0;
}

static void pipe_release(struct file *f)
{
    struct pipe *p = f->pipe;
    if ((f->flags & O_ACCMODE) == O_RDONLY) {
        p->readers--;
    } else {
        p->writers--;
    }
    wake_channel(p, -1);
    if (p->readers == 0 && p->writers == 0) {
        pmm_free_contig(virt_to_phys(p->buf), PIPE_SIZE / PAGE_SIZE);
        kfree(p);
    }
}

static short pipe_poll(struct file *f)
{
    struct pipe *p = f->pipe;
    if ((f->flags & O_ACCMODE) == O_RDONLY) {
        return (short)((p->count > 0 ? POLLIN : 0) | (p->writers == 0 ? POLLHUP : 0));
    }
    return (short)((p->count < PIPE_SIZE ? POLLOUT : 0) | (p->readers == 0 ? POLLERR : 0));
}

static const struct file_ops pipe_ops = {
    .read = pipe_read, .write = pipe_write, .stat = pipe_stat, .release = pipe_release, .poll = pipe_poll,
};

/* ---- block devices ------------------------------------------------------------------------------------------------- */

#define MAX_DISKS 16
static struct blkfile disks[MAX_DISKS];
static int disk_count;

static long blk_io(struct file *f, u64 buf, u64 len, u64 *pos, bool write)
{
    pv_blk *d = &f->blk->dev;
    const u64 ss = PV_BLOCK_SECTOR_SIZE;
    if (write && d->read_only) {
        return -EROFS;
    }
    if (*pos >= f->size) {
        return write ? (len == 0 ? 0 : -ENOSPC) : 0;
    }
    len = MIN(len, f->size - *pos);
    u64 done = 0;
    while (done < len) {
        u64 at = *pos + done;
        u64 first_sector = at / ss;
        u64 offset = at % ss;
        u64 span = MIN(len - done, (u64)BOUNCE_SIZE - offset);
        u64 sectors_bytes = ALIGN_UP(offset + span, ss);
        if (first_sector * ss + sectors_bytes > f->size) {
            sectors_bytes = f->size - first_sector * ss;
            span = MIN(span, sectors_bytes - offset);
        }
        long r;
        if (write) {
            bool partial = offset != 0 || (span % ss) != 0;
            if (partial) {
                r = pv_blk_read(d, first_sector, bounce, sectors_bytes);
                if (r < 0) {
                    return done ? (long)done : -EIO;
                }
            }
            if (copy_from_user(bounce + offset, buf + done, span) < 0) {
                return done ? (long)done : -EFAULT;
            }
            r = pv_blk_write(d, first_sector, bounce, sectors_bytes);
        } else {
            r = pv_blk_read(d, first_sector, bounce, sectors_bytes);
            if (r >= 0 && copy_to_user(buf + done, bounce + offset, span) < 0) {
                return done ? (long)done : -EFAULT;
            }
        }
        if (r < 0) {
            return done ? (long)done : (r == PV_STATUS_READ_ONLY ? -EROFS : -EIO);
        }
        done += span;
    }
    *pos += done;
    return (long)done;
}

static long blk_read(struct file *f, u64 buf, u64 len, u64 *pos) { return blk_io(f, buf, len, pos, false); }
static long blk_write(struct file *f, u64 buf, u64 len, u64 *pos) { return blk_io(f, buf, len, pos, true); }

static long blk_stat(struct file *f, struct linux_stat *st)
{
    /* A regular file of the disk's size: what FileStream and RandomAccess need to seek and know the length. */
    st->st_mode = S_IFREG | (f->blk->dev.read_only ? 0444 : 0644);
    st->st_size = (i64)f->size;
    st->st_blksize = 4096;
    st->st_blocks = (i64)(f->size / 512);
    return 0;
}

static long blk_fsync(struct file *f)
{
    long r = pv_blk_flush(&f->blk->dev);
    return r < 0 ? -EIO : 0;
}

static const struct file_ops blk_ops = {
    .read = blk_read, .write = blk_write, .stat = blk_stat, .poll = always_ready, .fsync = blk_fsync,
    .seekable = true,
};

/* ---- fd table ------------------------------------------------------------------------------------------------------- */

static struct file *file_new(const struct file_ops *ops, u32 flags)
{
    struct file *f = kmalloc(sizeof(*f));
    if (f == NULL) {
        return NULL;
    }
    f->refs = 1;
    f->ops = ops;
    f->flags = flags;
    return f;
}

static void file_put(struct file *f)
{
    if (--f->refs == 0) {
        if (f->ops->release) {
            f->ops->release(f);
        }
        kfree(f);
    }
}

static int fd_alloc(struct file *f, int min, bool cloexec)
{
    for (int fd = min; fd < MAX_FDS; fd++) {
        if (fds[fd].file == NULL) {
            fds[fd].file = f;
            fds[fd].cloexec = cloexec;
            return fd;
        }
    }
    return -EMFILE;
}

static struct file *fd_get(int fd)
{
    if (fd < 0 || fd >= MAX_FDS) {
        return NULL;
    }
    return fds[fd].file;
}

void fs_init(void)
{
    u64 phys = pmm_alloc_contig(BOUNCE_SIZE / PAGE_SIZE);
    if (phys == 0) {
        panic("out of memory for the I/O buffer");
    }
    bounce = phys_to_virt(phys);

    console_attached = pv_cons_attach(&console, NULL) == 0;
    struct file *con = file_new(&console_ops, O_RDWR);
    if (con == NULL) {
        panic("out of memory");
    }
    con->refs = 3;
    fds[0].file = fds[1].file = fds[2].file = con;

    if (pv_boot_info_get()->features0 & PV_FEATURE0_DEVICES) {
        pv_device_info info;
        for (uint32_t i = 0; i < PV_RING_EVENT_PORTS && disk_count < MAX_DISKS; i++) {
            if (pv_device_info_get(i, &info) < 0) {
                break;
            }
            if (info.kind != PV_DEVICE_KIND_BLOCK) {
                continue;
            }
            struct blkfile *b = &disks[disk_count++];
            memcpy(b->name, info.name, sizeof(b->name));
            b->name[sizeof(b->name) - 1] = 0;
            b->present = true;
        }
    }
}

/* ---- paths ----------------------------------------------------------------------------------------------------------- */

/* Normalizes path (relative to "/", the only working directory) into out: "/a/b". */
static long normalize(const char *path, char *out, u64 cap)
{
    u64 n = 0;
    out[n++] = '/';
    const char *p = path;
    while (*p) {
        while (*p == '/') {
            p++;
        }
        if (*p == 0) {
            break;
        }
        const char *s = p;
        while (*p && *p != '/') {
            p++;
        }
        u64 len = (u64)(p - s);
        if (len == 1 && s[0] == '.') {
            continue;
        }
        if (len == 2 && s[0] == '.' && s[1] == '.') {
            while (n > 1 && out[n - 1] != '/') {
                n--;
            }
            if (n > 1) {
                n--;
            }
            continue;
        }
        if (n > 1) {
            if (n + 1 >= cap) {
                return -ENAMETOOLONG;
            }
            out[n++] = '/';
        }
        if (n + len >= cap) {
            return -ENAMETOOLONG;
        }
        memcpy(out + n, s, len);
        n += len;
    }
    out[n] = 0;
    return (long)n;
}

/* /proc/self/..., /proc/<pid>/..., /proc/thread-self/...: the suffix after the process part, or NULL. */
static const char *proc_self(const char *p)
{
    if (!kstartswith(p, "/proc/")) {
        return NULL;
    }
    p += 6;
    if (kstartswith(p, "self/")) {
        return p + 5;
    }
    if (kstartswith(p, "thread-self/")) {
        return p + 12;
    }
    if (kstartswith(p, "1/")) {
        return p + 2;
    }
    return NULL;
}

static u8 *gen_buf;
static u64 gen_len, gen_cap;

static void gen_append(const char *s, u64 n)
{
    if (gen_len + n > gen_cap) {
        u64 cap = MAX(gen_cap * 2, gen_len + n + 4096);
        u8 *b = kmalloc(cap);
        if (b == NULL) {
            return;
        }
        if (gen_buf) {
            memcpy(b, gen_buf, gen_len);
            kfree(gen_buf);
        }
        gen_buf = b;
        gen_cap = cap;
    }
    memcpy(gen_buf + gen_len, s, n);
    gen_len += n;
}

static void gen_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void gen_printf(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    size_t n = pv_vformat(line, sizeof(line), "", fmt, ap);
    va_end(ap);
    gen_append(line, n);
}

static void gen_maps(void)
{
    for (int i = 0; i < vm_count(); i++) {
        const struct vma *v = vm_at(i);
        char perms[5] = {
            (v->flags & VMA_READ) ? 'r' : '-', (v->flags & VMA_WRITE) ? 'w' : '-', (v->flags & VMA_EXEC) ? 'x' : '-',
            'p', 0,
        };
        const char *name = (v->flags & VMA_IMAGE) ? exec_path : (v->flags & VMA_HEAP) ? "[heap]" : (v->flags & VMA_STACK) ? "[stack]" : "";
        gen_printf("%08lx-%08lx %s %08lx %s %lu", v->start, v->end, perms, (v->flags & VMA_IMAGE) ? v->file_offset : 0,
                   (v->flags & VMA_IMAGE) ? "00:01" : "00:00", (v->flags & VMA_IMAGE) ? 1ul : 0ul);
        if (name[0]) {
            gen_printf("                          %s", name);
        }
        gen_append("\n", 1);
    }
}

extern const u8 *exec_args_data;
extern u64 exec_args_len, exec_env_off;
extern u64 exec_image_phys, exec_image_size;

/* Generated and fixed files; false when the path does not exist. */
static bool special_file(const char *p, struct file *f)
{
    const char *self = proc_self(p);
    gen_buf = NULL;
    gen_len = gen_cap = 0;
    f->mode = S_IFREG | 0444;
    if (self && kstrcmp(self, "maps") == 0) {
        gen_maps();
    } else if (self && kstrcmp(self, "exe") == 0) {
        f->data = phys_to_virt(exec_image_phys);
        f->size = exec_image_size;
        f->mode = S_IFREG | 0555;
        f->ino = 2;
        return true;
    } else if (self && kstrcmp(self, "cmdline") == 0) {
        gen_append((const char *)exec_args_data, exec_env_off);
    } else if (self && kstrcmp(self, "environ") == 0) {
        gen_append((const char *)exec_args_data + exec_env_off, exec_args_len - exec_env_off);
    } else if (self && kstrcmp(self, "comm") == 0) {
        gen_printf("%s\n", current->name[0] ? current->name : "app");
    } else if (kstrcmp(p, "/proc/meminfo") == 0) {
        u64 total = pmm_total_pages() * 4, free = pmm_free_pages() * 4;
        gen_printf("MemTotal:       %8lu kB\nMemFree:        %8lu kB\nMemAvailable:   %8lu kB\n"
                   "Buffers:               0 kB\nCached:                0 kB\nSwapTotal:             0 kB\n"
                   "SwapFree:              0 kB\n", total, free, free);
    } else if (kstrcmp(p, "/sys/devices/system/cpu/online") == 0 || kstrcmp(p, "/sys/devices/system/cpu/possible") == 0 ||
               kstrcmp(p, "/sys/devices/system/cpu/present") == 0) {
        gen_printf("0\n");
    } else {
        return false;
    }
    f->owned = gen_buf;
    f->data = gen_buf;
    f->size = gen_len;
    f->ino = 3;
    return true;
}

static long open_path(const char *path, int flags, struct file **out)
{
    static char p[512];
    long r = normalize(path, p, sizeof(p));
    if (r < 0) {
        return r;
    }
    int acc = flags & O_ACCMODE;
    const struct file_ops *ops = NULL;
    u64 rdev = 0;
    if (kstrcmp(p, "/dev/null") == 0) {
        ops = &null_ops;
        rdev = (1u << 8) | 3u;
    } else if (kstrcmp(p, "/dev/zero") == 0) {
        ops = &zero_ops;
        rdev = (1u << 8) | 5u;
    } else if (kstrcmp(p, "/dev/urandom") == 0 || kstrcmp(p, "/dev/random") == 0) {
        ops = &random_ops;
        rdev = (1u << 8) | 9u;
    } else if (kstrcmp(p, "/dev/stdin") == 0 || kstrcmp(p, "/dev/stdout") == 0 || kstrcmp(p, "/dev/stderr") == 0 ||
               kstrcmp(p, "/dev/console") == 0 || kstrcmp(p, "/dev/tty") == 0) {
        ops = &console_ops;
    }
    if (ops != NULL) {
        struct file *f = file_new(ops, (u32)(flags & (O_ACCMODE | O_APPEND | O_NONBLOCK)));
        if (f == NULL) {
            return -ENOMEM;
        }
        f->ino = rdev;
        *out = f;
        return 0;
    }
    if (kstartswith(p, "/dev/")) {
        for (int i = 0; i < disk_count; i++) {
            if (kstrcmp(p + 5, disks[i].name) != 0) {
                continue;
            }
            struct blkfile *b = &disks[i];
            if (!b->opened) {
                long e = pv_blk_open(&b->dev, b->name);
                if (e < 0) {
                    return -EIO;
                }
                b->opened = true;
            }
            if (acc != O_RDONLY && b->dev.read_only) {
                return -EROFS;
            }
            if (flags & O_DIRECTORY) {
                return -ENOTDIR;
            }
            struct file *f = file_new(&blk_ops, (u32)(flags & (O_ACCMODE | O_APPEND | O_NONBLOCK)));
            if (f == NULL) {
                return -ENOMEM;
            }
            f->blk = b;
            f->size = b->dev.sectors * PV_BLOCK_SECTOR_SIZE;
            f->ino = 100 + (u64)i;
            *out = f;
            return 0;
        }
    }
    struct file *f = file_new(&mem_ops, (u32)(flags & (O_ACCMODE | O_NONBLOCK)));
    if (f == NULL) {
        return -ENOMEM;
    }
    if (!special_file(p, f)) {
        kfree(f);
        return (flags & O_CREAT) ? -EROFS : -ENOENT;
    }
    if (acc != O_RDONLY) {
        file_put(f);
        return -EACCES;
    }
    if (flags & O_DIRECTORY) {
        file_put(f);
        return -ENOTDIR;
    }
    *out = f;
    return 0;
}

/* ---- system calls ---------------------------------------------------------------------------------------------------- */

static long get_path(u64 upath, char *buf, u64 cap)
{
    long n = user_strncpy(buf, upath, cap);
    if (n < 0) {
        return n;
    }
    return n;
}

/* The path argument of an *at system call, copied into buf: its length (0 for ""), or a negative errno. There are no
 * directory descriptors, so a relative path needs dirfd == AT_FDCWD; any other dirfd gives -EBADF (not open) or
 * -ENOTDIR. */
static long get_at_path(int dirfd, u64 upath, char *buf, u64 cap)
{
    long n = get_path(upath, buf, cap);
    if (n > 0 && buf[0] != '/' && dirfd != AT_FDCWD) {
        return fd_get(dirfd) == NULL ? -EBADF : -ENOTDIR;
    }
    return n;
}

/* Opens the file that an *at system call names by a non-empty path (see get_at_path): 0 with *out held, or a
 * negative errno. */
static long open_at(int dirfd, u64 upath, int flags, struct file **out)
{
    static char path[512];
    long n = get_at_path(dirfd, upath, path, sizeof(path));
    if (n < 0) {
        return n;
    }
    if (n == 0) {
        return -ENOENT;
    }
    return open_path(path, flags, out);
}

long sys_openat(int dirfd, u64 upath, int flags, int mode)
{
    UNUSED(mode);
    struct file *f;
    long r = open_at(dirfd, upath, flags, &f);
    if (r < 0) {
        return r;
    }
    int fd = fd_alloc(f, 0, (flags & O_CLOEXEC) != 0);
    if (fd < 0) {
        file_put(f);
    }
    return fd;
}

long sys_close(int fd)
{
    struct file *f = fd_get(fd);
    if (f == NULL) {
        return -EBADF;
    }
    fds[fd].file = NULL;
    file_put(f);
    return 0;
}

long sys_close_range(unsigned first, unsigned last, unsigned flags)
{
    if (first > last) {
        return -EINVAL;
    }
    for (u64 fd = first; fd <= last && fd < MAX_FDS; fd++) {
        if (fds[fd].file == NULL) {
            continue;
        }
        if (flags & 4 /* CLOSE_RANGE_CLOEXEC */) {
            fds[fd].cloexec = true;
        } else {
            sys_close((int)fd);
        }
    }
    return 0;
}

long sys_read(int fd, u64 buf, u64 len)
{
    struct file *f = fd_get(fd);
    if (f == NULL) {
        return -EBADF;
    }
    if ((f->flags & O_ACCMODE) == O_WRONLY) {
        return -EBADF;
    }
    if (!user_range_ok(buf, len)) {
        return -EFAULT;
    }
    return f->ops->read(f, buf, len, &f->pos);
}

long sys_write(int fd, u64 buf, u64 len)
{
    struct file *f = fd_get(fd);
    if (f == NULL) {
        return -EBADF;
    }
    if ((f->flags & O_ACCMODE) == O_RDONLY && f->ops != &console_ops) {
        return -EBADF;
    }
    if (!user_range_ok(buf, len)) {
        return -EFAULT;
    }
    if ((f->flags & O_APPEND) && f->ops->seekable) {
        f->pos = f->size;
    }
    return f->ops->write(f, buf, len, &f->pos);
}

long sys_pread(int fd, u64 buf, u64 len, i64 off, bool write)
{
    struct file *f = fd_get(fd);
    if (f == NULL) {
        return -EBADF;
    }
    if (!f->ops->seekable) {
        return -ESPIPE;
    }
    if (off < 0) {
        return -EINVAL;
    }
    if (!user_range_ok(buf, len)) {
        return -EFAULT;
    }
    u64 pos = (u64)off;
    if (write) {
        if ((f->flags & O_ACCMODE) == O_RDONLY) {
            return -EBADF;
        }
        return f->ops->write(f, buf, len, &pos);
    }
    if ((f->flags & O_ACCMODE) == O_WRONLY) {
        return -EBADF;
    }
    return f->ops->read(f, buf, len, &pos);
}

long sys_readv(int fd, u64 uiov, int iovcnt, bool write, i64 off, bool positional)
{
    if (iovcnt < 0 || iovcnt > 1024) {
        return -EINVAL;
    }
    long total = 0;
    for (int i = 0; i < iovcnt; i++) {
        struct linux_iovec iov;
        if (copy_from_user(&iov, uiov + (u64)i * sizeof(iov), sizeof(iov)) < 0) {
            return total ? total : -EFAULT;
        }
        if (iov.len == 0) {
            continue;
        }
        long r;
        if (positional) {
            r = sys_pread(fd, iov.base, iov.len, off + total, write);
        } else {
            r = write ? sys_write(fd, iov.base, iov.len) : sys_read(fd, iov.base, iov.len);
        }
        if (r < 0) {
            return total ? total : r;
        }
        total += r;
        if ((u64)r < iov.len) {
            break;
        }
    }
    return total;
}

long sys_lseek(int fd, i64 off, int whence)
{
    struct file *f = fd_get(fd);
    if (f == NULL) {
        return -EBADF;
    }
    if (!f->ops->seekable) {
        return -ESPIPE;
    }
    i64 base;
    switch (whence) {
    case SEEK_SET: base = 0; break;
    case SEEK_CUR: base = (i64)f->pos; break;
    case SEEK_END: base = (i64)f->size; break;
    default: return -EINVAL;
    }
    i64 pos = base + off;
    if ((off > 0 && pos < base) || pos < 0) {
        return -EINVAL;
    }
    f->pos = (u64)pos;
    return pos;
}

static void fill_stat(struct file *f, struct linux_stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_dev = 1;
    st->st_ino = f->ino ? f->ino : 1;
    st->st_nlink = 1;
    f->ops->stat(f, st);
    u64 t = realtime_ns();
    st->st_atime = st->st_mtime = st->st_ctime = t / 1000000000ull;
}

long sys_fstat(int fd, u64 ust)
{
    struct file *f = fd_get(fd);
    if (f == NULL) {
        return -EBADF;
    }
    struct linux_stat st;
    fill_stat(f, &st);
    return copy_to_user(ust, &st, sizeof(st));
}

long sys_newfstatat(int dirfd, u64 upath, u64 ust, int flags)
{
    static char path[512];
    long n = get_at_path(dirfd, upath, path, sizeof(path));
    if (n < 0) {
        return n;
    }
    if (n == 0) {
        if (flags & AT_EMPTY_PATH) {
            return sys_fstat(dirfd, ust);
        }
        return -ENOENT;
    }
    struct file *f;
    long r = open_path(path, O_RDONLY, &f);
    if (r < 0) {
        return r == -EACCES ? -ENOENT : r;
    }
    struct linux_stat st;
    fill_stat(f, &st);
    file_put(f);
    return copy_to_user(ust, &st, sizeof(st));
}

long sys_statx(int dirfd, u64 upath, int flags, unsigned mask, u64 ubuf)
{
    UNUSED(mask);
    static char path[512];
    long n = get_at_path(dirfd, upath, path, sizeof(path));
    if (n < 0) {
        return n;
    }
    struct file *f = NULL;
    bool put = false;
    if (n == 0) {
        if (!(flags & AT_EMPTY_PATH)) {
            return -ENOENT;
        }
        f = fd_get(dirfd);
        if (f == NULL) {
            return -EBADF;
        }
    } else {
        long r = open_path(path, O_RDONLY, &f);
        if (r < 0) {
            return r;
        }
        put = true;
    }
    struct linux_stat st;
    fill_stat(f, &st);
    if (put) {
        file_put(f);
    }
    struct linux_statx sx;
    memset(&sx, 0, sizeof(sx));
    sx.stx_mask = STATX_BASIC_STATS;
    sx.stx_blksize = (u32)st.st_blksize;
    sx.stx_nlink = (u32)st.st_nlink;
    sx.stx_mode = (u16)st.st_mode;
    sx.stx_ino = st.st_ino;
    sx.stx_size = (u64)st.st_size;
    sx.stx_blocks = (u64)st.st_blocks;
    sx.stx_atime.tv_sec = sx.stx_mtime.tv_sec = sx.stx_ctime.tv_sec = (i64)st.st_mtime;
    sx.stx_rdev_major = (u32)(st.st_rdev >> 8);
    sx.stx_rdev_minor = (u32)(st.st_rdev & 0xff);
    sx.stx_dev_minor = 1;
    return copy_to_user(ubuf, &sx, sizeof(sx));
}

long sys_readlinkat(int dirfd, u64 upath, u64 ubuf, i64 cap)
{
    static char path[512], norm[512];
    if (cap <= 0) {
        return -EINVAL;
    }
    long n = get_path(upath, path, sizeof(path));
    if (n < 0) {
        return n;
    }
    if (path[0] != '/' && dirfd != AT_FDCWD) {
        return fd_get(dirfd) == NULL ? -EBADF : -ENOTDIR;
    }
    if (normalize(path, norm, sizeof(norm)) < 0) {
        return -ENAMETOOLONG;
    }
    const char *self = proc_self(norm);
    if (self && kstrcmp(self, "exe") == 0) {
        /* An absolute path, as Linux gives it: argv[0] may be relative ("./app"), and static glibc asserts that this
           link starts with '/' (_dl_get_origin, at start-up), so a relative one killed the application with SIGABRT.
           The working directory is always "/". */
        static char exe[256];
        long m = normalize(exec_path, exe, sizeof(exe));
        if (m < 0) {
            return m;
        }
        u64 len = MIN((u64)m, (u64)cap);
        return copy_to_user(ubuf, exe, len) < 0 ? -EFAULT : (long)len;
    }
    struct file *f;
    long r = open_path(path, O_RDONLY, &f);
    if (r < 0) {
        return r == -EACCES ? -EINVAL : r;
    }
    file_put(f);
    return -EINVAL; /* exists, but is not a symbolic link */
}

long sys_faccessat(int dirfd, u64 upath, int mode)
{
    struct file *f;
    long r = open_at(dirfd, upath, O_RDONLY, &f);
    if (r < 0) {
        return r;
    }
    struct linux_stat st;
    fill_stat(f, &st);
    file_put(f);
    if ((mode & 2) && !(st.st_mode & 0222)) {
        return -EACCES;
    }
    return 0;
}

long sys_dup3(int oldfd, int newfd, int flags, bool dup2)
{
    struct file *f = fd_get(oldfd);
    if (f == NULL) {
        return -EBADF;
    }
    if (newfd < 0 || newfd >= MAX_FDS) {
        return -EBADF;
    }
    if (oldfd == newfd) {
        return dup2 ? newfd : -EINVAL;
    }
    if ((flags & ~O_CLOEXEC) != 0) {
        return -EINVAL;
    }
    f->refs++;
    if (fds[newfd].file) {
        file_put(fds[newfd].file);
    }
    fds[newfd].file = f;
    fds[newfd].cloexec = (flags & O_CLOEXEC) != 0;
    return newfd;
}

long sys_dup(int fd)
{
    struct file *f = fd_get(fd);
    if (f == NULL) {
        return -EBADF;
    }
    f->refs++;
    int n = fd_alloc(f, 0, false);
    if (n < 0) {
        f->refs--;
    }
    return n;
}

long sys_fcntl(int fd, int cmd, u64 arg)
{
    struct file *f = fd_get(fd);
    if (f == NULL) {
        return -EBADF;
    }
    switch (cmd) {
    case F_DUPFD:
    case F_DUPFD_CLOEXEC: {
        if (arg >= MAX_FDS) {
            return -EINVAL;
        }
        f->refs++;
        int n = fd_alloc(f, (int)arg, cmd == F_DUPFD_CLOEXEC);
        if (n < 0) {
            f->refs--;
        }
        return n;
    }
    case F_GETFD:
        return fds[fd].cloexec ? FD_CLOEXEC : 0;
    case F_SETFD:
        fds[fd].cloexec = (arg & FD_CLOEXEC) != 0;
        return 0;
    case F_GETFL:
        return f->flags;
    case F_SETFL:
        f->flags = (f->flags & ~(u32)(O_APPEND | O_NONBLOCK)) | (u32)(arg & (O_APPEND | O_NONBLOCK));
        return 0;
    case F_GETLK:
    case F_SETLK:
    case F_SETLKW:
        return 0; /* one process: every lock is granted */
    case F_GETPIPE_SZ:
        return f->pipe ? PIPE_SIZE : -EBADF;
    default:
        return -EINVAL;
    }
}

long sys_ioctl(int fd, u64 cmd, u64 arg)
{
    struct file *f = fd_get(fd);
    if (f == NULL) {
        return -EBADF;
    }
    switch (cmd) {
    case FIONBIO: {
        int on;
        if (copy_from_user(&on, arg, sizeof(on)) < 0) {
            return -EFAULT;
        }
        f->flags = on ? (f->flags | O_NONBLOCK) : (f->flags & ~(u32)O_NONBLOCK);
        return 0;
    }
    case FIOCLEX:
        fds[fd].cloexec = true;
        return 0;
    case FIONREAD: {
        int n = 0;
        if (f->ops == &console_ops) {
            fs_poll_console();
            n = (int)cons_count;
        } else if (f->pipe) {
            n = (int)f->pipe->count;
        } else if (f->ops->seekable) {
            n = f->pos < f->size ? (int)MIN(f->size - f->pos, 0x7fffffffull) : 0;
        }
        return copy_to_user(arg, &n, sizeof(n));
    }
    case BLKGETSIZE64:
        if (f->blk == NULL) {
            return -ENOTTY;
        }
        return copy_to_user(arg, &f->size, sizeof(f->size));
    default:
        return -ENOTTY; /* the console is not a terminal: TCGETS, TIOCGWINSZ ... */
    }
}

long sys_fsync(int fd)
{
    struct file *f = fd_get(fd);
    if (f == NULL) {
        return -EBADF;
    }
    return f->ops->fsync ? f->ops->fsync(f) : 0;
}

long sys_ftruncate(int fd, i64 len)
{
    struct file *f = fd_get(fd);
    if (f == NULL) {
        return -EBADF;
    }
    if (len < 0) {
        return -EINVAL;
    }
    if (f->blk) {
        return (u64)len == f->size ? 0 : -EPERM; /* a disk does not change size */
    }
    return -EINVAL;
}

long sys_getdents64(int fd, u64 buf, u64 len)
{
    UNUSED(buf);
    UNUSED(len);
    return fd_get(fd) == NULL ? -EBADF : -ENOTDIR;
}

long sys_pipe2(u64 ufds, int flags)
{
    if (flags & ~(O_CLOEXEC | O_NONBLOCK)) {
        return -EINVAL;
    }
    struct pipe *p = kmalloc(sizeof(*p));
    if (p == NULL) {
        return -ENOMEM;
    }
    u64 phys = pmm_alloc_contig(PIPE_SIZE / PAGE_SIZE);
    if (phys == 0) {
        kfree(p);
        return -ENOMEM;
    }
    p->buf = phys_to_virt(phys);
    p->readers = p->writers = 1;
    struct file *r = file_new(&pipe_ops, O_RDONLY | (u32)(flags & O_NONBLOCK));
    struct file *w = file_new(&pipe_ops, O_WRONLY | (u32)(flags & O_NONBLOCK));
    if (r == NULL || w == NULL) {
        kfree(r);
        kfree(w);
        pmm_free_contig(phys, PIPE_SIZE / PAGE_SIZE);
        kfree(p);
        return -ENOMEM;
    }
    r->pipe = w->pipe = p;
    int fr = fd_alloc(r, 0, (flags & O_CLOEXEC) != 0);
    if (fr < 0) {
        file_put(r);
        file_put(w);
        return fr;
    }
    int fw = fd_alloc(w, 0, (flags & O_CLOEXEC) != 0);
    if (fw < 0) {
        sys_close(fr);
        file_put(w);
        return fw;
    }
    int out[2] = { fr, fw };
    if (copy_to_user(ufds, out, sizeof(out)) < 0) {
        sys_close(fr);
        sys_close(fw);
        return -EFAULT;
    }
    return 0;
}

/* poll/ppoll: readiness of every fd; waits (interruptibly) until one is ready or the deadline. */
long sys_poll(u64 ufds, u64 nfds, u64 deadline)
{
    if (nfds > MAX_FDS) {
        return -EINVAL;
    }
    for (;;) {
        long ready = 0;
        for (u64 i = 0; i < nfds; i++) {
            struct linux_pollfd p;
            if (copy_from_user(&p, ufds + i * sizeof(p), sizeof(p)) < 0) {
                return -EFAULT;
            }
            short rev = 0;
            if (p.fd >= 0) {
                struct file *f = fd_get(p.fd);
                if (f == NULL) {
                    rev = POLLNVAL;
                } else {
                    short ev = f->ops->poll ? f->ops->poll(f) : (short)(POLLIN | POLLOUT);
                    rev = (short)(ev & (p.events | POLLERR | POLLHUP));
                }
            }
            p.revents = rev;
            if (copy_to_user(ufds + i * sizeof(p) + 6, &p.revents, 2) < 0) {
                return -EFAULT;
            }
            if (rev) {
                ready++;
            }
        }
        if (ready > 0) {
            return ready;
        }
        if (deadline != UINT64_MAX && now_ns() >= deadline) {
            return 0;
        }
        /* Wake on console input (idle polls it) or any pipe activity: both wake their own channels, so poll
         * re-checks at the next deadline or console event; a short slice keeps pipes responsive. */
        console_readers++;
        u64 slice = now_ns() + 1000000ull;
        int why = block_current(&console_channel, MIN(deadline, slice));
        console_readers--;
        if (why == WAKE_SIGNAL) {
            return -EINTR;
        }
    }
}

/*
 * cmdline.c: "key=value" arguments from the boot info's command line (paravirt/paravirt.h).
 */
#include <paravirt/paravirt.h>

long pv_cmdline_get(const char *key, char *buf, size_t cap)
{
    const pv_boot_info *bi = pv_boot_info_get();
    if (bi->command_line == 0 || bi->command_line_length == 0) {
        return PV_STATUS_NOT_FOUND;
    }
    const char *s = (const char *)pv_virt(bi->command_line);
    size_t len = bi->command_line_length;
    size_t klen = strlen(key);
    size_t i = 0;
    while (i < len) {
        while (i < len && s[i] == ' ') {
            i++;
        }
        size_t start = i;
        while (i < len && s[i] != ' ' && s[i] != 0) {
            i++;
        }
        size_t wlen = i - start;
        if (wlen >= klen && memcmp(s + start, key, klen) == 0 && (wlen == klen || s[start + klen] == '=')) {
            size_t vstart = wlen == klen ? start + klen : start + klen + 1;
            size_t vlen = i - vstart;
            if (cap > 0) {
                size_t n = vlen < cap - 1 ? vlen : cap - 1;
                memcpy(buf, s + vstart, n);
                buf[n] = 0;
            }
            return (long)vlen;
        }
        if (i < len && s[i] == 0) {
            break;
        }
    }
    return PV_STATUS_NOT_FOUND;
}

uint64_t pv_cmdline_u64(const char *key, uint64_t fallback)
{
    char v[32];
    long n = pv_cmdline_get(key, v, sizeof(v));
    if (n <= 0 || (size_t)n >= sizeof(v)) {
        return fallback;
    }
    uint64_t base = 10, x = 0;
    const char *p = v;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
    }
    if (*p == 0) {
        return fallback;
    }
    for (; *p; p++) {
        uint64_t d;
        if (*p >= '0' && *p <= '9') {
            d = (uint64_t)(*p - '0');
        } else if (base == 16 && *p >= 'a' && *p <= 'f') {
            d = (uint64_t)(*p - 'a' + 10);
        } else if (base == 16 && *p >= 'A' && *p <= 'F') {
            d = (uint64_t)(*p - 'A' + 10);
        } else {
            return fallback;
        }
        if (d >= base || x > (UINT64_MAX - d) / base) {
            return fallback; /* not a digit of the base, or overflow */
        }
        x = x * base + d;
    }
    return x;
}

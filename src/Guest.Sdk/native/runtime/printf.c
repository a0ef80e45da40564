/*
 * printf.c: a minimal formatter. Conversions %s %c %d %i %u %x %X %p %%; length modifiers l, ll, z; a field
 * width (digits or *) and the flags 0 and -. No floating point (guests do not use it). An unknown conversion is
 * copied through verbatim so that a mistake is visible in the output.
 */
#include <paravirt/paravirt.h>

struct pv_sink {
    char *buf;        /* snprintf: destination; printf: staging buffer */
    size_t size;      /* capacity of buf */
    size_t pos;       /* characters stored in buf */
    size_t count;     /* characters produced in total */
    int console;      /* flush full buffers to the console */
};

static void pv_sink_flush(struct pv_sink *s)
{
    if (s->console && s->pos > 0) {
        pv_console_write(s->buf, s->pos);
        s->pos = 0;
    }
}

static void pv_put(struct pv_sink *s, char c)
{
    if (s->console) {
        if (s->pos == s->size) {
            pv_sink_flush(s);
        }
        s->buf[s->pos++] = c;
    } else if (s->size > 0 && s->pos < s->size - 1) {
        s->buf[s->pos++] = c;
    }
    s->count++;
}

static void pv_put_padded(struct pv_sink *s, const char *text, size_t len, int width, int left, char pad)
{
    size_t fill = width > 0 && (size_t)width > len ? (size_t)width - len : 0;
    if (!left) {
        /* Zero padding goes after a sign. */
        if (pad == '0' && len > 0 && text[0] == '-') {
            pv_put(s, '-');
            text++;
            len--;
        }
        for (size_t i = 0; i < fill; i++) {
            pv_put(s, pad);
        }
    }
    for (size_t i = 0; i < len; i++) {
        pv_put(s, text[i]);
    }
    if (left) {
        for (size_t i = 0; i < fill; i++) {
            pv_put(s, ' ');
        }
    }
}

/* Formats v in base 10 or 16 into the end of tmp[24]; returns the first character. */
static char *pv_utoa(char *end, uint64_t v, unsigned base, int upper)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char *p = end;
    do {
        *--p = digits[v % base];
        v /= base;
    } while (v != 0);
    return p;
}

static void pv_format(struct pv_sink *s, const char *fmt, va_list ap)
{
    while (*fmt != '\0') {
        if (*fmt != '%') {
            pv_put(s, *fmt++);
            continue;
        }
        const char *start = fmt++;
        int left = 0;
        char pad = ' ';
        for (;; fmt++) {
            if (*fmt == '0') {
                pad = '0';
            } else if (*fmt == '-') {
                left = 1;
            } else {
                break;
            }
        }
        int width = 0;
        if (*fmt == '*') {
            width = va_arg(ap, int);
            if (width < 0) {
                left = 1;
                width = -width;
            }
            fmt++;
        } else {
            while (*fmt >= '0' && *fmt <= '9') {
                if (width < 1000) {
                    width = width * 10 + (*fmt - '0');
                }
                fmt++;
            }
        }
        int size = 0; /* 0 int, 1 long, 2 long long, 3 size_t */
        if (*fmt == 'l') {
            size = 1;
            fmt++;
            if (*fmt == 'l') {
                size = 2;
                fmt++;
            }
        } else if (*fmt == 'z') {
            size = 3;
            fmt++;
        }

        char tmp[24];
        char *end = tmp + sizeof(tmp);
        switch (*fmt) {
        case 'd':
        case 'i': {
            int64_t v = size == 0 ? va_arg(ap, int)
                      : size == 1 ? va_arg(ap, long)
                      : size == 2 ? va_arg(ap, long long)
                                  : (int64_t)va_arg(ap, size_t);
            uint64_t mag = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
            char *p = pv_utoa(end, mag, 10, 0);
            if (v < 0) {
                *--p = '-';
            }
            pv_put_padded(s, p, (size_t)(end - p), width, left, pad);
            break;
        }
        case 'u':
        case 'x':
        case 'X': {
            uint64_t v = size == 0 ? va_arg(ap, unsigned int)
                       : size == 1 ? va_arg(ap, unsigned long)
                       : size == 2 ? va_arg(ap, unsigned long long)
                                   : va_arg(ap, size_t);
            char *p = pv_utoa(end, v, *fmt == 'u' ? 10 : 16, *fmt == 'X');
            pv_put_padded(s, p, (size_t)(end - p), width, left, pad);
            break;
        }
        case 'p': {
            char *p = pv_utoa(end, (uint64_t)(uintptr_t)va_arg(ap, void *), 16, 0);
            *--p = 'x';
            *--p = '0';
            pv_put_padded(s, p, (size_t)(end - p), width, left, ' ');
            break;
        }
        case 'c': {
            char c = (char)va_arg(ap, int);
            pv_put_padded(s, &c, 1, width, left, ' ');
            break;
        }
        case 's': {
            const char *str = va_arg(ap, const char *);
            if (str == NULL) {
                str = "(null)";
            }
            pv_put_padded(s, str, strlen(str), width, left, ' ');
            break;
        }
        case '%':
            pv_put(s, '%');
            break;
        default:
            /* Unknown or truncated conversion: copy it through. */
            while (start < fmt) {
                pv_put(s, *start++);
            }
            if (*fmt == '\0') {
                return;
            }
            pv_put(s, *fmt);
            break;
        }
        fmt++;
    }
}

int pv_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct pv_sink s = { buf, size, 0, 0, 0 };
    pv_format(&s, fmt, ap);
    if (size > 0) {
        buf[s.pos] = '\0';
    }
    return (int)s.count;
}

size_t pv_vformat(char *buf, size_t size, const char *prefix, const char *fmt, va_list ap)
{
    size_t n = 0;
    while (prefix[n] != '\0' && n + 1 < size) {
        buf[n] = prefix[n];
        n++;
    }
    int m = pv_vsnprintf(buf + n, size - n, fmt, ap);
    if (m > 0) {
        n += (size_t)m < size - n - 1 ? (size_t)m : size - n - 1;
    }
    return n;
}

int pv_snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = pv_vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

int pv_vprintf(const char *fmt, va_list ap)
{
    char staging[128];
    struct pv_sink s = { staging, sizeof(staging), 0, 0, 1 };
    pv_format(&s, fmt, ap);
    pv_sink_flush(&s);
    return (int)s.count;
}

int pv_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = pv_vprintf(fmt, ap);
    va_end(ap);
    return n;
}

int pv_puts(const char *s)
{
    size_t n = strlen(s);
    pv_console_write(s, n);
    pv_console_write("\n", 1);
    return (int)n + 1;
}

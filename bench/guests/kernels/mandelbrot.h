/*
 * mandelbrot.h - the escape-time iteration of the Mandelbrot set, in double: the one copy that
 * bench/guests/compute.c's floating-point mix and the emulator tests' fpmix.c both iterate over their grids.
 */
#ifndef BENCH_KERNELS_MANDELBROT_H
#define BENCH_KERNELS_MANDELBROT_H

/* How many steps of z = z^2 + c (z from 0, c = cr + ci i) stay within |z| <= 2, at most max_steps. */
static int mandelbrot_escape(double cr, double ci, int max_steps)
{
    double zr = 0, zi = 0;
    int i = 0;
    for (; i < max_steps && zr * zr + zi * zi <= 4.0; i++) {
        double t = zr * zr - zi * zi + cr;
        zi = 2 * zr * zi + ci;
        zr = t;
    }
    return i;
}

#endif

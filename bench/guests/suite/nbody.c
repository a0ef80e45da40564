/*
 * nbody - the n-body simulation of the Computer Language Benchmarks Game: the Sun and the four Jovian planets,
 * symplectic Euler steps of 0.01 days, double precision (SSE2 scalar, with sqrtsd and divsd). Written for this
 * suite from the benchmark's description; the initial conditions are the published ones (they are physical data:
 * positions in AU, velocities in AU/day scaled by 365.24, masses in solar masses times 4 pi^2). Self-check: the
 * energy before any step, and after 1000 steps, is the benchmark's published output (-0.169075164, -0.169087605).
 * The kernel itself is ../kernels/nbody.h, which bench/guests/compute.c and the emulator tests' fpmix.c share.
 *
 * Work: scale x 10000 steps.
 */
#include "bench.h"

const struct bench_kernel bench_kernel = { "nbody", 52 };

#include "../kernels/nbody.h"

static int near(double v, double want) { return v - want < 5e-10 && want - v < 5e-10; }

uint64_t bench_run(uint32_t scale)
{
    struct body b[NBODY_BODIES];
    for (int i = 0; i < NBODY_BODIES; i++)
        b[i] = nbody_jovian[i];
    nbody_offset_momentum(b);
    double e0 = nbody_energy(b);
    if (!near(e0, -0.169075164))
        bench_fail("the initial energy is not the benchmark's -0.169075164");
    uint64_t sum = bench_mix(0, bench_bits(e0));
    nbody_advance(b, 1000, 0.01);
    if (!near(nbody_energy(b), -0.169087605))
        bench_fail("the energy after 1000 steps is not the benchmark's -0.169087605");
    for (uint32_t r = 0; r < scale; r++) {
        nbody_advance(b, 10000, 0.01);
        sum = bench_mix(sum, bench_bits(nbody_energy(b)));
        sum = bench_mix(sum, bench_bits(b[1].x) ^ bench_bits(b[4].vz));
    }
    return sum;
}

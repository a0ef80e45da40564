/*
 * nbody.h - the n-body simulation of the Computer Language Benchmarks Game (the Sun and the four Jovian planets,
 * symplectic Euler steps, double precision), written from the benchmark's description. The one copy of the kernel:
 * the suite's nbody.c, bench/guests/compute.c's floating-point mix and the emulator tests' fpmix.c include it.
 *
 * NBODY_SQRT is the square root the includer can link: __builtin_sqrt (sqrtsd with -fno-math-errno) by default;
 * a file built without -fno-math-errno defines it to an inline sqrtsd so no libm call (errno path) is emitted.
 * (Marked unused: an includer may need only some of it, and the suite builds with -Wall -Werror.)
 */
#ifndef BENCH_KERNELS_NBODY_H
#define BENCH_KERNELS_NBODY_H

#ifndef NBODY_SQRT
#define NBODY_SQRT __builtin_sqrt
#endif

#define NBODY_PI 3.141592653589793
#define NBODY_SOLAR_MASS (4 * NBODY_PI * NBODY_PI)
#define NBODY_DAYS_PER_YEAR 365.24
#define NBODY_BODIES 5

struct body {
    double x, y, z, vx, vy, vz, mass;
};

/* The benchmark's published initial conditions (physical data: positions in AU, velocities in AU/day scaled by
 * 365.24, masses in solar masses times 4 pi^2). */
__attribute__((unused)) static const struct body nbody_jovian[NBODY_BODIES] = {
    { 0, 0, 0, 0, 0, 0, NBODY_SOLAR_MASS },
    { 4.84143144246472090e+00, -1.16032004402742839e+00, -1.03622044471123109e-01, 1.66007664274403694e-03 * NBODY_DAYS_PER_YEAR,
      7.69901118419740425e-03 * NBODY_DAYS_PER_YEAR, -6.90460016972063023e-05 * NBODY_DAYS_PER_YEAR, 9.54791938424326609e-04 * NBODY_SOLAR_MASS },
    { 8.34336671824457987e+00, 4.12479856412430479e+00, -4.03523417114321381e-01, -2.76742510726862411e-03 * NBODY_DAYS_PER_YEAR,
      4.99852801234917238e-03 * NBODY_DAYS_PER_YEAR, 2.30417297573763929e-05 * NBODY_DAYS_PER_YEAR, 2.85885980666130812e-04 * NBODY_SOLAR_MASS },
    { 1.28943695621391310e+01, -1.51111514016986312e+01, -2.23307578892655734e-01, 2.96460137564761618e-03 * NBODY_DAYS_PER_YEAR,
      2.37847173959480950e-03 * NBODY_DAYS_PER_YEAR, -2.96589568540237556e-05 * NBODY_DAYS_PER_YEAR, 4.36624404335156298e-05 * NBODY_SOLAR_MASS },
    { 1.53796971148509165e+01, -2.59193146099879641e+01, 1.79258772950371181e-01, 2.68067772490389322e-03 * NBODY_DAYS_PER_YEAR,
      1.62824170038242295e-03 * NBODY_DAYS_PER_YEAR, -9.51592254519715870e-05 * NBODY_DAYS_PER_YEAR, 5.15138902046611451e-05 * NBODY_SOLAR_MASS },
};

/* Gives the Sun the momentum that makes the system's total zero (the benchmark's first step). */
__attribute__((unused)) static void nbody_offset_momentum(struct body *b)
{
    double px = 0, py = 0, pz = 0;
    for (int i = 0; i < NBODY_BODIES; i++) {
        px += b[i].vx * b[i].mass;
        py += b[i].vy * b[i].mass;
        pz += b[i].vz * b[i].mass;
    }
    b[0].vx = -px / NBODY_SOLAR_MASS;
    b[0].vy = -py / NBODY_SOLAR_MASS;
    b[0].vz = -pz / NBODY_SOLAR_MASS;
}

/* The system's total energy (kinetic minus potential): what the benchmark prints before and after the steps. */
__attribute__((unused)) static double nbody_energy(const struct body *b)
{
    double e = 0;
    for (int i = 0; i < NBODY_BODIES; i++) {
        e += 0.5 * b[i].mass * (b[i].vx * b[i].vx + b[i].vy * b[i].vy + b[i].vz * b[i].vz);
        for (int j = i + 1; j < NBODY_BODIES; j++) {
            double dx = b[i].x - b[j].x, dy = b[i].y - b[j].y, dz = b[i].z - b[j].z;
            e -= b[i].mass * b[j].mass / NBODY_SQRT(dx * dx + dy * dy + dz * dz);
        }
    }
    return e;
}

/* steps symplectic Euler steps of dt days: every pair's velocity change, then every position. */
__attribute__((unused)) static void nbody_advance(struct body *b, int steps, double dt)
{
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < NBODY_BODIES; i++)
            for (int j = i + 1; j < NBODY_BODIES; j++) {
                double dx = b[i].x - b[j].x, dy = b[i].y - b[j].y, dz = b[i].z - b[j].z;
                double d2 = dx * dx + dy * dy + dz * dz;
                double mag = dt / (d2 * NBODY_SQRT(d2));
                b[i].vx -= dx * b[j].mass * mag;
                b[i].vy -= dy * b[j].mass * mag;
                b[i].vz -= dz * b[j].mass * mag;
                b[j].vx += dx * b[i].mass * mag;
                b[j].vy += dy * b[i].mass * mag;
                b[j].vz += dz * b[i].mass * mag;
            }
        for (int i = 0; i < NBODY_BODIES; i++) {
            b[i].x += dt * b[i].vx;
            b[i].y += dt * b[i].vy;
            b[i].z += dt * b[i].vz;
        }
    }
}

#endif

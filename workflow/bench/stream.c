// STREAM-like memory bandwidth of a device's CPU: read (sum) and copy over arrays far larger than
// the caches, with the device's thread count; best of several repetitions, in GB/s (1e9 bytes/s).
// Usage: stream <MiB per array> <repetitions>   (threads from OMP_NUM_THREADS)
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoull(argv[1], 0, 10) : 1024;
    int reps = argc > 2 ? atoi(argv[2]) : 10;
    size_t n = mib * 1024 * 1024 / sizeof(double);
    double *a = aligned_alloc(64, n * sizeof(double)), *b = aligned_alloc(64, n * sizeof(double));
    if (!a || !b) { fprintf(stderr, "stream: cannot allocate 2 x %zu MiB\n", mib); return 1; }
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) { a[i] = 1.0 + (double)(i & 7); b[i] = 0.0; }
    double best_read = 0, best_copy = 0, sink = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now(), s = 0;
#pragma omp parallel for simd reduction(+ : s) schedule(static)
        for (size_t i = 0; i < n; i++) s += a[i];
        double t1 = now();
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) b[i] = a[i];
        double t2 = now();
        sink += s + b[n / 2];
        double read = n * sizeof(double) / (t1 - t0) / 1e9, copy = 2.0 * n * sizeof(double) / (t2 - t1) / 1e9;
        if (read > best_read) best_read = read;
        if (copy > best_copy) best_copy = copy;
    }
    printf("{\"read_gbs\": %.3f, \"copy_gbs\": %.3f, \"threads\": %d, \"array_mib\": %zu, \"repetitions\": %d, \"checksum\": %.1f}\n",
           best_read, best_copy, omp_get_max_threads(), mib, reps, sink);
    return 0;
}

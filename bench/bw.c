// Streaming-read memory bandwidth: T threads each sum their part of a
// buffer much larger than the caches with AVX2 loads; best of R passes.
// The buffer is advised for huge pages, as `llamux` keeps its weights:
// on this VM 4 KiB pages read 23-27 GB/s on one core, huge pages 29-34.
// Usage: bw [threads] [MiB] [reps]. Prints GB/s (1e9 bytes/s).
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static char *buf;
static size_t part;
static pthread_barrier_t bar;
static int reps;
static double best = 1e30;
static volatile float sink;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

__attribute__((target("avx2"))) static float sum(const char *p, size_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n; i += 128) {
        a0 = _mm256_add_ps(a0, _mm256_load_ps((const float *)(p + i)));
        a1 = _mm256_add_ps(a1, _mm256_load_ps((const float *)(p + i + 32)));
        a2 = _mm256_add_ps(a2, _mm256_load_ps((const float *)(p + i + 64)));
        a3 = _mm256_add_ps(a3, _mm256_load_ps((const float *)(p + i + 96)));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    float o[8];
    _mm256_storeu_ps(o, s);
    return o[0] + o[7];
}

static void *run(void *arg) {
    size_t id = (size_t)arg;
    for (int r = 0; r < reps; r++) {
        pthread_barrier_wait(&bar);
        double t0 = now();
        sink = sum(buf + id * part, part);
        pthread_barrier_wait(&bar);
        if (id == 0) {
            double t = now() - t0;
            if (t < best) best = t;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    int th = argc > 1 ? atoi(argv[1]) : 1;
    size_t mib = argc > 2 ? atol(argv[2]) : 1024;
    reps = argc > 3 ? atoi(argv[3]) : 10;
    size_t total = mib << 20;
    part = total / th / 128 * 128;
    if (posix_memalign((void **)&buf, 2 << 20, total)) return 1;
    madvise(buf, total, MADV_HUGEPAGE); // a hint: without it, 4 KiB pages
    memset(buf, 1, total); // fault the pages in
    pthread_barrier_init(&bar, 0, th);
    pthread_t t[64];
    for (int i = 1; i < th; i++) pthread_create(&t[i], 0, run, (void *)(size_t)i);
    run(0);
    for (int i = 1; i < th; i++) pthread_join(t[i], 0);
    printf("%.2f\n", part * th / best / 1e9);
    return 0;
}

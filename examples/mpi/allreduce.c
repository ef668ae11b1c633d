/*
 * The Open MPI baseline of bench_collectives: MPI_Allreduce (MPI_SUM, f32,
 * in place) of the sizes given on the command line.
 *
 * Usage: allreduce BYTES:WARMUP:ITERS [BYTES:WARMUP:ITERS ...]
 *
 * For each size, every rank fills its buffer with known values, the first
 * call's result is checked on every rank (the sum of the ranks' inputs),
 * then the buffers are zeroed (so no value grows over the iterations),
 * WARMUP untimed calls run, then ITERS timed ones, each after an
 * MPI_Barrier, timed on rank 0 with MPI_Wtime, then one more checked call
 * with known values. Rank 0 prints one line per
 * size:
 *
 *   RESULT <bytes> <ranks> <iters> <median seconds per call>
 *
 * A wrong sum prints `WRONG <bytes> <index> <got> <expected>` and aborts.
 * bench_collectives writes this file to a temporary directory, builds it
 * with `mpicc -O2` and runs it with mpirun; its Rust side does the same.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rank `rank`'s input at index i: exact in f32 for any sum over 16 ranks. */
static float input(long i, int rank) { return (float)(i % 1000) + 1000.0f * (float)rank; }

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One checked call: fills buf with the rank's inputs, reduces, checks the sum. */
static void fill_and_check(float *buf, long n, long bytes, int rank, int ranks) {
    for (long i = 0; i < n; i++) buf[i] = input(i, rank);
    MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    for (long i = 0; i < n; i++) {
        float expected = 0.0f;
        for (int r = 0; r < ranks; r++) expected += input(i, r);
        if (buf[i] != expected) {
            printf("WRONG %ld %ld %g %g\n", bytes, i, (double)buf[i], (double)expected);
            fflush(stdout);
            MPI_Abort(MPI_COMM_WORLD, 4);
        }
    }
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, ranks;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    for (int a = 1; a < argc; a++) {
        long bytes, warmup, iters;
        if (sscanf(argv[a], "%ld:%ld:%ld", &bytes, &warmup, &iters) != 3 || bytes < 4 ||
            iters < 1 || warmup < 0) {
            if (rank == 0) fprintf(stderr, "bad argument %s: BYTES:WARMUP:ITERS expected\n", argv[a]);
            MPI_Abort(MPI_COMM_WORLD, 2);
        }
        long n = bytes / 4;
        float *buf = malloc((size_t)n * sizeof(float));
        double *times = malloc((size_t)iters * sizeof(double));
        if (!buf || !times) {
            fprintf(stderr, "out of memory for %ld bytes\n", bytes);
            MPI_Abort(MPI_COMM_WORLD, 3);
        }
        fill_and_check(buf, n, bytes, rank, ranks);
        memset(buf, 0, (size_t)n * sizeof(float));
        for (long w = 0; w < warmup; w++)
            MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        for (long t = 0; t < iters; t++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double start = MPI_Wtime();
            MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            times[t] = MPI_Wtime() - start;
        }
        fill_and_check(buf, n, bytes, rank, ranks);
        if (rank == 0) {
            qsort(times, (size_t)iters, sizeof(double), cmp_double);
            printf("RESULT %ld %d %ld %.9e\n", bytes, ranks, iters, times[iters / 2]);
            fflush(stdout);
        }
        free(times);
        free(buf);
    }
    MPI_Finalize();
    return 0;
}

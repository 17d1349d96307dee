/* bench_proc.h -- what /proc says about a process: the CPU time it used and, when asked, its
 * resident and proportional memory. herald-bench samples the hub (--server-pid) before the run,
 * once connected and at the window's edges, and itself and its workers for its own CPU. */
#ifndef HERALD_BENCH_PROC_H
#define HERALD_BENCH_PROC_H

#include <stdbool.h>
#include <sys/types.h>

struct proc_sample {
    bool is_ok;   /* /proc/PID/stat was read */
    double cpu_s; /* utime + stime, every thread */
    bool has_mem; /* smaps_rollup was read */
    long rss_kb, pss_kb;
};

/* Reads pid's CPU time from /proc/PID/stat and, with with_mem, Rss and Pss from
 * /proc/PID/smaps_rollup into *s; what cannot be read is left zero, with is_ok or has_mem
 * false. */
void proc_read(pid_t pid, bool with_mem, struct proc_sample *s);

#endif

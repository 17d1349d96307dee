/* bench_proc.c -- /proc/PID/stat and /proc/PID/smaps_rollup, read with stdio: a sample costs a
 * few system calls, taken a handful of times per run, never on a hot path. */
#include "bench_proc.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

void proc_read(pid_t pid, bool with_mem, struct proc_sample *s)
{
    char path[64], buf[4096];
    FILE *f;
    size_t n;
    const char *p;
    unsigned long long ut, st;

    memset(s, 0, sizeof(*s));
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
     * stime */
    if (!p ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return;
    s->is_ok = true;
    s->cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    if (!with_mem)
        return;
    snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(buf, sizeof(buf), f)) {
        long v;

        if (sscanf(buf, "Rss: %ld kB", &v) == 1) {
            s->rss_kb = v;
            s->has_mem = true;
        } else if (sscanf(buf, "Pss: %ld kB", &v) == 1) {
            s->pss_kb = v;
        }
    }
    fclose(f);
}

/* bench_report.c -- herald-bench's summary (bench_report.h). The rates are over the measured
 * window (events the hub accepted in it, frames received in it); loss is over the whole run
 * after the drain; the hub's CPU is the --server-pid sample difference across the window and
 * its memory the samples before, connected and at the window's end. tests/bench/compare,
 * fanout and cluster read the JSON. */
#include "bench_report.h"

#include "bench_run.h"
#include "bench_workers.h"

#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "herald_version.h"

static const char *close_name(unsigned slot)
{
    switch (slot) {
    case 0: return "normal";
    case 1: return "going away";
    case 3: return "binary refused";
    case 8: return "policy";
    case 9: return "too large";
    case 11: return "internal error";
    case 13: return "slow consumer";
    case SUB_CLOSE_OTHER: return "other code";
    case SUB_CLOSE_NO_FRAME: return "no close frame";
    default: return "";
    }
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;

        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

void report_summarize(const struct run *r, struct summary *s)
{
    memset(s, 0, sizeof(*s));
    s->window_s = (r->win_end_us - r->win_start_us) / 1e6;
    if (s->window_s <= 0)
        s->window_s = 1e-6;
    s->delivered_per_s = r->final.frames_measured / s->window_s;
    s->published_per_s =
        (double)(r->pub_at_end.events_acked - r->pub_at_start.events_acked) / s->window_s;
    s->lost = (int64_t)r->expected - (int64_t)r->final.frames;
    s->loss_pct = r->expected ? 100.0 * (double)s->lost / (double)r->expected : 0;
    s->bench_cores = (r->bench_cpu_end - r->bench_cpu_start) / s->window_s;
    s->has_server = r->srv_win_start.is_ok && r->srv_win_end.is_ok;
    if (s->has_server) {
        s->srv_cpu_s = r->srv_win_end.cpu_s - r->srv_win_start.cpu_s;
        s->srv_cores = s->srv_cpu_s / s->window_s;
        s->srv_us_per_frame =
            r->final.frames_measured ? s->srv_cpu_s * 1e6 / (double)r->final.frames_measured : 0;
    }
    workers_first_error(r->w, s->sub_error, sizeof(s->sub_error));
    pub_first_error(r->pub, s->pub_error, sizeof(s->pub_error));
}

static void mem_line(FILE *f, const char *what, const struct proc_sample *a,
                     const struct proc_sample *b, const struct proc_sample *c, bool pss)
{
    const struct proc_sample *v[3] = {a, b, c};

    fprintf(f, "%s", what);
    for (int i = 0; i < 3; i++) {
        if (v[i]->has_mem)
            fprintf(f, "%s%.1f", i ? " -> " : "", (pss ? v[i]->pss_kb : v[i]->rss_kb) / 1024.0);
        else
            fprintf(f, "%s?", i ? " -> " : "");
    }
    fprintf(f, " MiB (before -> connected -> end of window)\n");
}

void report_text(FILE *f, const struct run *r, const struct summary *s)
{
    const struct options *o = r->o;
    const struct pub_counters *p = &r->pub_final;
    const struct sub_counters *c = &r->final;
    uint64_t closes = sub_counters_closes(c);

    fprintf(f, "herald-bench %s: %u subscribers on %u channel%s (%u process%s x %u thread%s)%s%s\n",
            HERALD_VERSION, o->subscribers, o->channels, o->channels > 1 ? "s" : "",
            workers_procs(r->w) ? workers_procs(r->w) : 1, workers_procs(r->w) > 1 ? "es" : "",
            o->threads, o->threads > 1 ? "s" : "", o->peer != PEER_HERALD ? ", --peer " : "",
            o->peer != PEER_HERALD ? opts_peer_names[o->peer] : "");
    if (o->rate > 0)
        fprintf(f, "  load       --rate %g events/s", o->rate);
    else
        fprintf(f, "  load       --saturate");
    fprintf(f, ", inflight %u, batch %u, %u-byte events; %.1f s warmup, %.1f s measured%s\n",
            o->inflight, o->batch, o->size, o->warmup, s->window_s,
            r->is_interrupted ? " (interrupted)" : "");
    fprintf(f, "  connect    %u subscribed in %.2f s: %.0f connections/s", o->subscribers,
            r->connect_s, o->subscribers / r->connect_s);
    if (r->srv_before.is_ok && r->srv_connected.is_ok && o->subscribers)
        fprintf(f, "; server %.1f us CPU per connection",
                (r->srv_connected.cpu_s - r->srv_before.cpu_s) * 1e6 / o->subscribers);
    fprintf(f, "\n");
    fprintf(f,
            "  published  %.0f events/s accepted in the window; %" PRIu64 " events in %" PRIu64
            " requests, %" PRIu64 " %s, %" PRIu64 " failed",
            s->published_per_s, p->events_sent, p->requests, p->requests_ok,
            o->peer == PEER_NCHAN ? "accepted (200-202)" : "answered 202", p->requests_failed);
    if (p->events_skipped)
        fprintf(f, ", %" PRIu64 " events skipped (publisher behind schedule)", p->events_skipped);
    if (p->unanswered)
        fprintf(f, ", %" PRIu64 " unanswered", p->unanswered);
    if (o->max_backlog)
        fprintf(f, "; held %.2f s by --max-backlog %u", p->held_us / 1e6, o->max_backlog);
    fprintf(f, "\n");
    if (p->requests_failed) {
        fprintf(f, "  errors     by status:");
        for (unsigned st = 0; st < PUB_STATUS_MAX; st++) {
            uint64_t n = pub_is_accepted(r->pub, st) ? 0 : pub_status_count(r->pub, st);

            if (n)
                fprintf(f, " %s%u: %" PRIu64, st ? "" : "no answer/", st, n);
        }
        if (p->overloaded || p->retry_after)
            fprintf(f, "; 503 overloaded: %" PRIu64 ", with Retry-After: %" PRIu64, p->overloaded,
                    p->retry_after);
        fprintf(f, "; first: %s\n", s->pub_error);
    }
    fprintf(f, "  requests   round trip p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
            hist_percentile(&r->rtt, 50) / 1000.0, hist_percentile(&r->rtt, 99) / 1000.0,
            r->rtt.max / 1000.0);
    fprintf(f,
            "  delivered  %.0f frames/s in the window (%" PRIu64 " frames; %" PRIu64 " in all)\n",
            s->delivered_per_s, c->frames_measured, c->frames);
    fprintf(f,
            "  loss       %" PRId64 " of %" PRIu64 " expected frames (%.4f%%) after %.2f s of "
            "drain\n",
            s->lost, r->expected, s->loss_pct, r->drain_s);
    fprintf(f,
            "  latency    p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f ms (%" PRIu64
            " frames of events sent in the window)\n",
            hist_percentile(&r->latency, 50) / 1000.0, hist_percentile(&r->latency, 90) / 1000.0,
            hist_percentile(&r->latency, 99) / 1000.0, hist_percentile(&r->latency, 99.9) / 1000.0,
            r->latency.max / 1000.0, r->latency.total);
    fprintf(f, "  closes     ");
    if (!closes)
        fprintf(f, "none");
    for (unsigned i = 0; i < SUB_CLOSE_SLOTS; i++) {
        if (!c->closes[i])
            continue;
        if (i < SUB_CLOSE_CODES)
            fprintf(f, "%u %s: %" PRIu64 "  ", 1000 + i, close_name(i), c->closes[i]);
        else
            fprintf(f, "%s: %" PRIu64 "  ", close_name(i), c->closes[i]);
    }
    fprintf(f, "\n");
    if (c->bad_events)
        fprintf(f, "  warning    %" PRIu64 " event frames had no readable \"t\"/\"s\"\n",
                c->bad_events);
    if (o->is_verify && c->verify_failed)
        fprintf(f, "  verify     no verdict: a subscriber ran out of memory for its set\n");
    else if (o->is_verify)
        fprintf(f,
                "  verify     %" PRIu64 " subscribers still connected: %" PRIu64
                " events answered 202 missing (%" PRIu64 " subscribers incomplete); %" PRIu64
                " duplicates; %" PRIu64 " received though not answered 202\n",
                c->verified, c->missing, c->incomplete, c->duplicates, c->unacked);
    if (s->has_server) {
        fprintf(f,
                "  server     pid %d: %.2f CPU s in the window (%.2f cores), %.3f CPU us per "
                "delivered frame\n",
                (int)o->server_pid, s->srv_cpu_s, s->srv_cores, s->srv_us_per_frame);
        mem_line(f, "  server     RSS ", &r->srv_before, &r->srv_connected, &r->srv_win_end, false);
        mem_line(f, "  server     PSS ", &r->srv_before, &r->srv_connected, &r->srv_win_end, true);
    }
    fprintf(f, "  bench      %.2f cores in the window (this machine has %ld)\n", s->bench_cores,
            sysconf(_SC_NPROCESSORS_ONLN));
}

static void json_mem(FILE *f, const char *key, const struct proc_sample *m)
{
    if (m->has_mem)
        fprintf(f, ",\"rss_kb_%s\":%ld,\"pss_kb_%s\":%ld", key, m->rss_kb, key, m->pss_kb);
}

void report_json(FILE *f, const struct run *r, const struct summary *s)
{
    const struct options *o = r->o;
    const struct pub_counters *p = &r->pub_final;
    const struct sub_counters *c = &r->final;
    bool first = true;

    fprintf(f,
            "{\"version\":\"%s\",\"peer\":\"%s\",\"subscribers\":%u,\"channels\":%u,\"procs\":%u,"
            "\"threads\":%u,\"mode\":\"%s\",\"rate\":%g,\"inflight\":%u,\"batch\":%u,"
            "\"size\":%u,\"warmup_s\":%g,\"window_s\":%.3f,\"interrupted\":%s",
            HERALD_VERSION, opts_peer_names[o->peer], o->subscribers, o->channels,
            workers_procs(r->w) ? workers_procs(r->w) : 1, o->threads,
            o->rate > 0 ? "rate" : "saturate", o->rate, o->inflight, o->batch, o->size, o->warmup,
            s->window_s, r->is_interrupted ? "true" : "false");
    fprintf(f, ",\"connect\":{\"seconds\":%.3f,\"per_sec\":%.1f", r->connect_s,
            o->subscribers / r->connect_s);
    if (r->srv_before.is_ok && r->srv_connected.is_ok && o->subscribers)
        fprintf(f, ",\"server_cpu_us_per_conn\":%.2f",
                (r->srv_connected.cpu_s - r->srv_before.cpu_s) * 1e6 / o->subscribers);
    fprintf(f, "}");
    fprintf(f,
            ",\"published\":{\"events_per_sec\":%.1f,\"events_sent\":%" PRIu64
            ",\"events_acked\":%" PRIu64 ",\"events_failed\":%" PRIu64
            ",\"events_skipped\":%" PRIu64 ",\"requests\":%" PRIu64 ",\"requests_ok\":%" PRIu64
            ",\"requests_failed\":%" PRIu64 ",\"unanswered\":%" PRIu64
            ",\"max_backlog\":%u,\"held_s\":%.3f,\"overloaded\":%" PRIu64
            ",\"retry_after\":%" PRIu64 ",\"status\":{",
            s->published_per_s, p->events_sent, p->events_acked, p->events_failed,
            p->events_skipped, p->requests, p->requests_ok, p->requests_failed, p->unanswered,
            o->max_backlog, p->held_us / 1e6, p->overloaded, p->retry_after);
    for (unsigned st = 0; st < PUB_STATUS_MAX; st++) {
        uint64_t n = pub_status_count(r->pub, st);

        if (n) {
            fprintf(f, "%s\"%u\":%" PRIu64, first ? "" : ",", st, n);
            first = false;
        }
    }
    fprintf(f, "},\"round_trip_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f},\"first_error\":",
            hist_percentile(&r->rtt, 50) / 1000.0, hist_percentile(&r->rtt, 99) / 1000.0,
            r->rtt.max / 1000.0);
    json_string(f, s->pub_error);
    fprintf(f,
            "},\"delivered\":{\"frames_per_sec\":%.1f,\"frames_in_window\":%" PRIu64
            ",\"frames\":%" PRIu64 ",\"expected\":%" PRIu64 ",\"lost\":%" PRId64
            ",\"loss_pct\":%.6f,\"drain_s\":%.3f,\"bad_events\":%" PRIu64 "}",
            s->delivered_per_s, c->frames_measured, c->frames, r->expected, s->lost, s->loss_pct,
            r->drain_s, c->bad_events);
    fprintf(f,
            ",\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p99_9\":%.3f,\"max\":%.3f,"
            "\"samples\":%" PRIu64 "}",
            hist_percentile(&r->latency, 50) / 1000.0, hist_percentile(&r->latency, 90) / 1000.0,
            hist_percentile(&r->latency, 99) / 1000.0, hist_percentile(&r->latency, 99.9) / 1000.0,
            r->latency.max / 1000.0, r->latency.total);
    fprintf(f, ",\"closes\":{");
    first = true;
    for (unsigned i = 0; i < SUB_CLOSE_SLOTS; i++) {
        if (!c->closes[i])
            continue;
        if (i < SUB_CLOSE_CODES)
            fprintf(f, "%s\"%u\":%" PRIu64, first ? "" : ",", 1000 + i, c->closes[i]);
        else
            fprintf(f, "%s\"%s\":%" PRIu64, first ? "" : ",",
                    i == SUB_CLOSE_OTHER ? "other" : "no_frame", c->closes[i]);
        first = false;
    }
    fprintf(f, "}");
    if (o->is_verify)
        fprintf(f,
                ",\"verify\":{\"ok\":%s,\"verified\":%" PRIu64 ",\"missing\":%" PRIu64
                ",\"incomplete\":%" PRIu64 ",\"duplicates\":%" PRIu64 ",\"unacked\":%" PRIu64 "}",
                c->verify_failed ? "false" : "true", c->verified, c->missing, c->incomplete,
                c->duplicates, c->unacked);
    if (s->has_server) {
        fprintf(f,
                ",\"server\":{\"pid\":%d,\"cpu_s\":%.3f,\"cpu_cores\":%.3f,"
                "\"cpu_us_per_frame\":%.4f",
                (int)o->server_pid, s->srv_cpu_s, s->srv_cores, s->srv_us_per_frame);
        json_mem(f, "before", &r->srv_before);
        json_mem(f, "connected", &r->srv_connected);
        json_mem(f, "after", &r->srv_win_end);
        fprintf(f, "}");
    }
    fprintf(f, ",\"bench_cpu_cores\":%.3f}\n", s->bench_cores);
}

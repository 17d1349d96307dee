/* test_config.c -- hub/common/config.c: defaults, the four sources and their order, bounds, errors.
 * Every call gets an envp built here, never the real environment, and temporary config files
 * made with mkstemp. */
#include "common/config.h"
#include "common/log.h"
#include "herald_version.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define ERRLEN 256

/* One config_load with its captured output; argv and envp are NULL-terminated lists, argv
 * without the program name. */
struct run {
    struct config cfg;
    enum config_result rc;
    char err[ERRLEN];
    char *out;
    size_t out_len;
};

static void run(struct run *r, const char *const *args, const char *const *envp)
{
    char *argv[64];
    int argc = 0;
    FILE *out;

    memset(r, 0, sizeof(*r));
    argv[argc++] = (char *)"herald";
    for (size_t i = 0; args && args[i]; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    out = open_memstream(&r->out, &r->out_len);
    assert_non_null(out);
    r->rc = config_load(&r->cfg, argc, argv, (char *const *)envp, out, r->err, sizeof(r->err));
    fclose(out);
}

static void run_free(struct run *r)
{
    config_free(&r->cfg);
    free(r->out);
    r->out = NULL;
}

static const char *const no_env[] = {NULL};

/* The load must fail naming want, in one line, printing nothing. */
static void expect_error(const char *const *args, const char *const *envp, const char *want)
{
    struct run r;

    run(&r, args, envp);
    if (r.rc != CONFIG_ERROR || !strstr(r.err, want))
        print_error("args %s ...: rc %d, err '%s', wanted '%s'\n", args && args[0] ? args[0] : "",
                    (int)r.rc, r.err, want);
    assert_int_equal(r.rc, CONFIG_ERROR);
    assert_non_null(strstr(r.err, want));
    assert_null(strchr(r.err, '\n'));
    assert_int_equal(r.out_len, 0);
    run_free(&r);
}

static void expect_ok(struct run *r, const char *const *args, const char *const *envp)
{
    run(r, args, envp);
    if (r->rc != CONFIG_OK)
        print_error("unexpected error: %s\n", r->err);
    assert_int_equal(r->rc, CONFIG_OK);
    assert_int_equal(r->out_len, 0);
}

/* A temporary file holding text; returns its malloc'd path (unlink and free it). */
static char *temp_file(const char *text)
{
    char *path = strdup("/tmp/herald-test-config-XXXXXX");
    int fd;
    size_t len = strlen(text);

    assert_non_null(path);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return path;
}

static void remove_temp(char *path)
{
    unlink(path);
    free(path);
}

static void defaults(void **state)
{
    struct run r;

    (void)state;
    expect_ok(&r, NULL, no_env);
    assert_string_equal(r.cfg.listen.host, "0.0.0.0");
    assert_int_equal(r.cfg.listen.port, 8080);
    assert_string_equal(r.cfg.api_listen.host, "127.0.0.1");
    assert_int_equal(r.cfg.api_listen.port, 8081);
    assert_null(r.cfg.web_root);
    assert_int_equal(r.cfg.max_message_bytes, 65536);
    assert_int_equal(r.cfg.client_rate, 10);
    assert_int_equal(r.cfg.client_burst, 20);
    assert_int_equal(r.cfg.send_queue_bytes, 1048576);
    assert_int_equal(r.cfg.max_subscriptions, 100);
    assert_int_equal(r.cfg.heartbeat, 25);
    assert_int_equal(r.cfg.delivery_threads, 0);
    assert_int_equal(r.cfg.drain_seconds, 10);
    assert_null(r.cfg.instance_id);
    assert_int_equal(r.cfg.log_level, LOG_INFO);
    assert_int_equal(r.cfg.log_format, LOG_TEXT);
    run_free(&r);

    /* a NULL envp is an empty environment */
    expect_ok(&r, NULL, NULL);
    assert_int_equal(r.cfg.client_rate, 10);
    run_free(&r);
}

static void unrelated_environment_is_ignored(void **state)
{
    const char *const env[] = {"PATH=/bin",
                               "HERALD_CLIENT_RATE_X=5",
                               "HERALD_CLIENT_RAT=6",
                               "XHERALD_CLIENT_RATE=7",
                               "HERALD_CLIENT_RATE",
                               "herald_client_rate=8",
                               NULL};
    struct run r;

    (void)state;
    expect_ok(&r, NULL, env);
    assert_int_equal(r.cfg.client_rate, 10);
    run_free(&r);
}

static void environment_sets_every_kind(void **state)
{
    const char *const env[] = {
        "HERALD_LISTEN=10.1.2.3:9000",   "HERALD_API_LISTEN=[::1]:9001", "HERALD_WEB_ROOT=/srv/web",
        "HERALD_MAX_MESSAGE_BYTES=1000", "HERALD_CLIENT_RATE=50",        "HERALD_CLIENT_BURST=60",
        "HERALD_SEND_QUEUE_BYTES=2048",  "HERALD_MAX_SUBSCRIPTIONS=7",   "HERALD_HEARTBEAT=30",
        "HERALD_DELIVERY_THREADS=4",     "HERALD_DRAIN_SECONDS=0",       "HERALD_INSTANCE_ID=hub-a",
        "HERALD_LOG_LEVEL=debug",        "HERALD_LOG_FORMAT=json",       NULL};
    struct run r;

    (void)state;
    expect_ok(&r, NULL, env);
    assert_string_equal(r.cfg.listen.host, "10.1.2.3");
    assert_int_equal(r.cfg.listen.port, 9000);
    assert_string_equal(r.cfg.api_listen.host, "::1");
    assert_int_equal(r.cfg.api_listen.port, 9001);
    assert_string_equal(r.cfg.web_root, "/srv/web");
    assert_int_equal(r.cfg.max_message_bytes, 1000);
    assert_int_equal(r.cfg.client_rate, 50);
    assert_int_equal(r.cfg.client_burst, 60);
    assert_int_equal(r.cfg.send_queue_bytes, 2048);
    assert_int_equal(r.cfg.max_subscriptions, 7);
    assert_int_equal(r.cfg.heartbeat, 30);
    assert_int_equal(r.cfg.delivery_threads, 4);
    assert_int_equal(r.cfg.drain_seconds, 0);
    assert_string_equal(r.cfg.instance_id, "hub-a");
    assert_int_equal(r.cfg.log_level, LOG_DEBUG);
    assert_int_equal(r.cfg.log_format, LOG_JSON);
    run_free(&r);
}

static void flag_forms(void **state)
{
    const char *const args[] = {"--client-rate=42",
                                "--client-burst",
                                "43",
                                "--listen=[::1]:7000",
                                "--api-listen",
                                "localhost:7001",
                                "--instance-id=a=b",
                                "--log-level",
                                "error",
                                NULL};
    struct run r;

    (void)state;
    expect_ok(&r, args, no_env);
    assert_int_equal(r.cfg.client_rate, 42);
    assert_int_equal(r.cfg.client_burst, 43);
    assert_string_equal(r.cfg.listen.host, "::1");
    assert_int_equal(r.cfg.listen.port, 7000);
    assert_string_equal(r.cfg.api_listen.host, "localhost");
    assert_int_equal(r.cfg.api_listen.port, 7001);
    assert_string_equal(r.cfg.instance_id, "a=b"); /* the first '=' splits */
    assert_int_equal(r.cfg.log_level, LOG_ERROR);
    assert_int_equal(r.cfg.heartbeat, 25);
    run_free(&r);
}

static void later_flag_wins(void **state)
{
    const char *const args[] = {"--client-rate",     "5", "--client-rate=6", "--instance-id", "one",
                                "--instance-id=two", NULL};
    struct run r;

    (void)state;
    expect_ok(&r, args, no_env);
    assert_int_equal(r.cfg.client_rate, 6);
    assert_string_equal(r.cfg.instance_id, "two");
    run_free(&r);
}

static void precedence_flag_env_file_default(void **state)
{
    char *path = temp_file("{\"client-rate\": 1, \"client-burst\": 2, \"heartbeat\": 3,"
                           " \"instance-id\": \"from-file\", \"listen\": \"10.0.0.1:1\"}");
    char config_env[300];
    const char *const env[] = {"HERALD_CLIENT_RATE=5", "HERALD_CLIENT_BURST=6",
                               "HERALD_INSTANCE_ID=from-env", config_env, NULL};
    const char *const args[] = {"--client-rate", "7", "--instance-id=from-flag", NULL};
    struct run r;

    (void)state;
    snprintf(config_env, sizeof(config_env), "HERALD_CONFIG=%s", path);
    expect_ok(&r, args, env);
    assert_int_equal(r.cfg.client_rate, 7);                  /* flag */
    assert_string_equal(r.cfg.instance_id, "from-flag");     /* flag */
    assert_int_equal(r.cfg.client_burst, 6);                 /* environment */
    assert_int_equal(r.cfg.heartbeat, 3);                    /* file */
    assert_string_equal(r.cfg.listen.host, "10.0.0.1");      /* file */
    assert_int_equal(r.cfg.listen.port, 1);                  /* file */
    assert_int_equal(r.cfg.max_subscriptions, 100);          /* default */
    assert_string_equal(r.cfg.api_listen.host, "127.0.0.1"); /* default */
    run_free(&r);

    /* the same file through --config, without the environment */
    {
        const char *const args2[] = {"--config", path, NULL};
        const char *const args3[] = {"--heartbeat=9", NULL};
        char eq[320];
        const char *const args4[] = {eq, NULL};

        expect_ok(&r, args2, no_env);
        assert_int_equal(r.cfg.client_rate, 1);
        assert_int_equal(r.cfg.client_burst, 2);
        assert_string_equal(r.cfg.instance_id, "from-file");
        run_free(&r);

        /* a flag beats HERALD_CONFIG's file */
        expect_ok(&r, args3, env);
        assert_int_equal(r.cfg.heartbeat, 9);
        assert_int_equal(r.cfg.client_burst, 6);
        run_free(&r);

        snprintf(eq, sizeof(eq), "--config=%s", path);
        expect_ok(&r, args4, no_env);
        assert_int_equal(r.cfg.heartbeat, 3);
        run_free(&r);
    }
    remove_temp(path);
}

static void config_flag_replaces_config_env(void **state)
{
    char *env_file = temp_file("{\"heartbeat\": 11}");
    char *flag_file = temp_file("{\"drain-seconds\": 12}");
    char config_env[300];
    const char *const env[] = {config_env, NULL};
    const char *const args[] = {"--config", flag_file, NULL};
    struct run r;

    (void)state;
    snprintf(config_env, sizeof(config_env), "HERALD_CONFIG=%s", env_file);
    expect_ok(&r, NULL, env);
    assert_int_equal(r.cfg.heartbeat, 11);
    assert_int_equal(r.cfg.drain_seconds, 10);
    run_free(&r);

    expect_ok(&r, args, env);
    assert_int_equal(r.cfg.heartbeat, 25);
    assert_int_equal(r.cfg.drain_seconds, 12);
    run_free(&r);
    remove_temp(env_file);
    remove_temp(flag_file);
}

static void file_values_as_strings_and_numbers(void **state)
{
    char *path = temp_file("{\"client-rate\": \"15\", \"max-subscriptions\": 100000,"
                           " \"log-format\": \"json\", \"api-listen\": \"[fe80::1]:65535\"}");
    const char *const args[] = {"--config", path, NULL};
    struct run r;

    (void)state;
    expect_ok(&r, args, no_env);
    assert_int_equal(r.cfg.client_rate, 15);
    assert_int_equal(r.cfg.max_subscriptions, 100000);
    assert_int_equal(r.cfg.log_format, LOG_JSON);
    assert_string_equal(r.cfg.api_listen.host, "fe80::1");
    assert_int_equal(r.cfg.api_listen.port, 65535);
    run_free(&r);
    remove_temp(path);
}

static void uint_bounds(void **state)
{
    struct run r;

    (void)state;
    {
        const char *const lo[] = {"--client-rate", "1", NULL};
        const char *const hi[] = {"--client-rate", "100000", NULL};

        expect_ok(&r, lo, no_env);
        assert_int_equal(r.cfg.client_rate, 1);
        run_free(&r);
        expect_ok(&r, hi, no_env);
        assert_int_equal(r.cfg.client_rate, 100000);
        run_free(&r);
    }
    {
        const char *const zero[] = {"--client-rate", "0", NULL};
        const char *const over[] = {"--client-rate=100001", NULL};
        const char *const wrap[] = {"--client-rate", "4294967297", NULL}; /* 2^32 + 1 */
        const char *const small[] = {"--max-message-bytes", "63", NULL};
        const char *const queue[] = {"--send-queue-bytes", "1023", NULL};
        const char *const threads[] = {"--delivery-threads", "65", NULL};
        const char *const beat[] = {"--heartbeat", "0", NULL};

        expect_error(zero, no_env, "--client-rate");
        expect_error(over, no_env, "--client-rate");
        expect_error(wrap, no_env, "--client-rate");
        expect_error(small, no_env, "--max-message-bytes");
        expect_error(queue, no_env, "--send-queue-bytes");
        expect_error(threads, no_env, "--delivery-threads");
        expect_error(beat, no_env, "--heartbeat");
    }
    {
        /* zero is allowed where the table says so */
        const char *const args[] = {"--delivery-threads", "0", "--drain-seconds", "0", NULL};

        expect_ok(&r, args, no_env);
        assert_int_equal(r.cfg.delivery_threads, 0);
        assert_int_equal(r.cfg.drain_seconds, 0);
        run_free(&r);
    }
}

static void bounds_from_environment_and_file(void **state)
{
    const char *const env[] = {"HERALD_CLIENT_RATE=0", NULL};
    char *path = temp_file("{\"client-rate\": 100001}");
    const char *const args[] = {"--config", path, NULL};

    (void)state;
    expect_error(NULL, env, "--client-rate");
    expect_error(NULL, env, "HERALD_CLIENT_RATE");
    expect_error(args, no_env, "--client-rate");
    expect_error(args, no_env, path);
    remove_temp(path);
}

static void not_a_number(void **state)
{
    static const char *const bad[] = {
        "abc", "10x", "-1", "", " 5", "5 ", "+5", "1e3", "0x10", "1.5", "99999999999999999999999",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *const args[] = {"--client-burst", bad[i], NULL};

        expect_error(args, no_env, "--client-burst");
    }
    {
        const char *const env[] = {"HERALD_HEARTBEAT=soon", NULL};

        expect_error(NULL, env, "--heartbeat");
    }
}

static void addresses(void **state)
{
    static const char *const bad[] = {
        "localhost", "localhost:", ":8080",    "host:0", "host:65536",
        "host:http", "host:-1",    "host:80x", "[::1]",  "[::1]8080",
        "[::1:8080", "[]:8080",    "[::1]:0",  "",       "host:99999999999999999999",
    };
    static const struct {
        const char *in, *host;
        unsigned port;
    } good[] = {
        {"[::1]:8080", "::1", 8080},
        {"127.0.0.1:1", "127.0.0.1", 1},
        {"example.com:65535", "example.com", 65535},
        {"[2001:db8::7]:443", "2001:db8::7", 443},
    };
    struct run r;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *const args[] = {"--listen", bad[i], NULL};
        const char *const args2[] = {"--api-listen", bad[i], NULL};

        expect_error(args, no_env, "--listen");
        expect_error(args2, no_env, "--api-listen");
    }
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        const char *const args[] = {"--listen", good[i].in, NULL};

        expect_ok(&r, args, no_env);
        assert_string_equal(r.cfg.listen.host, good[i].host);
        assert_int_equal(r.cfg.listen.port, good[i].port);
        run_free(&r);
    }
    {
        /* the host must fit CONFIG_HOST_MAX with its NUL */
        char longest[CONFIG_HOST_MAX + 8], too_long[CONFIG_HOST_MAX + 8];
        const char *const a1[] = {"--listen", longest, NULL};
        const char *const a2[] = {"--listen", too_long, NULL};

        memset(longest, 'h', CONFIG_HOST_MAX - 1);
        strcpy(longest + CONFIG_HOST_MAX - 1, ":80");
        memset(too_long, 'h', CONFIG_HOST_MAX);
        strcpy(too_long + CONFIG_HOST_MAX, ":80");
        expect_ok(&r, a1, no_env);
        assert_int_equal(strlen(r.cfg.listen.host), CONFIG_HOST_MAX - 1);
        assert_int_equal(r.cfg.listen.port, 80);
        run_free(&r);
        expect_error(a2, no_env, "--listen");
    }
}

static void enums_and_strings(void **state)
{
    const char *const level[] = {"--log-level", "verbose", NULL};
    const char *const format[] = {"--log-format=JSON", NULL};
    const char *const empty_id[] = {"--instance-id=", NULL};
    const char *const empty_root[] = {"--web-root", "", NULL};
    const char *const levels[] = {"debug", "info", "warn", "error"};
    struct run r;

    (void)state;
    expect_error(level, no_env, "--log-level");
    expect_error(format, no_env, "--log-format");
    expect_error(empty_id, no_env, "--instance-id");
    expect_error(empty_root, no_env, "--web-root");
    for (int i = 0; i < 4; i++) {
        const char *const args[] = {"--log-level", levels[i], NULL};

        expect_ok(&r, args, no_env);
        assert_int_equal(r.cfg.log_level, i);
        run_free(&r);
    }
}

static void unknown_option(void **state)
{
    const char *const a1[] = {"--nope", "1", NULL};
    const char *const a2[] = {"--nope=1", NULL};
    const char *const a3[] = {"--client-rates", "1", NULL};
    const char *const a4[] = {"--client", "1", NULL};
    const char *const a5[] = {"stray", NULL};
    const char *const a6[] = {"-x", NULL};
    const char *const a7[] = {"--client-rate", "5", "extra", NULL};
    const char *const a8[] = {"--", NULL};

    (void)state;
    expect_error(a1, no_env, "--nope");
    expect_error(a2, no_env, "--nope");
    expect_error(a3, no_env, "--client-rates");
    expect_error(a4, no_env, "--client");
    expect_error(a5, no_env, "stray");
    expect_error(a6, no_env, "-x");
    expect_error(a7, no_env, "extra");
    expect_error(a8, no_env, "--");
}

static void missing_value(void **state)
{
    const char *const a1[] = {"--client-rate", NULL};
    const char *const a2[] = {"--heartbeat", "5", "--listen", NULL};
    const char *const a3[] = {"--config", NULL};

    (void)state;
    expect_error(a1, no_env, "--client-rate");
    expect_error(a2, no_env, "--listen");
    expect_error(a3, no_env, "--config");
}

static void config_file_errors(void **state)
{
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"{\"nope\": 1}", "nope"},
        {"{\"client-rate\": true}", "client-rate"},
        {"{\"client-rate\": 1.5}", "client-rate"},
        {"{\"client-rate\": -5}", "client-rate"},
        {"{\"client-rate\": null}", "client-rate"},
        {"{\"client-rate\": [10]}", "client-rate"},
        {"{\"listen\": 8080}", "listen"},
        {"{\"instance-id\": {}}", "instance-id"},
        {"{\"log-level\": 1}", "log-level"},
        {"{\"heartbeat\": 5, \"heartbeat\": 6}", "--config"},
        {"[{\"heartbeat\": 5}]", "--config"},
        {"{\"heartbeat\": 5", "--config"},
        {"", "--config"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *path = temp_file(cases[i].text);
        const char *const args[] = {"--config", path, NULL};

        expect_error(args, no_env, cases[i].want);
        expect_error(args, no_env, path);
        remove_temp(path);
    }
    {
        const char *const args[] = {"--config", "/nonexistent/herald-test.json", NULL};
        const char *const env[] = {"HERALD_CONFIG=/nonexistent/herald-test.json", NULL};

        expect_error(args, no_env, "/nonexistent/herald-test.json");
        expect_error(NULL, env, "/nonexistent/herald-test.json");
    }
}

static void error_after_strings_were_set(void **state)
{
    /* strings already copied must be released by config_free (ASan's leak check) */
    const char *const args[] = {"--instance-id", "x", "--web-root", "/w",
                                "--client-rate", "0", NULL};
    const char *const env[] = {"HERALD_INSTANCE_ID=e", NULL};
    struct run r;

    (void)state;
    run(&r, args, env);
    assert_int_equal(r.rc, CONFIG_ERROR);
    assert_non_null(strstr(r.err, "--client-rate"));
    run_free(&r);
}

/* --redis-url given several times, as a comma list, from the environment or as a JSON array:
 * the Redis shards, in order; a repeated flag adds to the list, and the flags replace what the
 * environment and the file said. */
static void redis_url_lists(void **state)
{
    char *file = temp_file("{\"redis-url\": [\"redis://10.0.0.1\", \"redis://10.0.0.2:6380/1\"]}");
    char config_env[300];
    const char *const env[] = {"HERALD_REDIS_URL=redis://e1, redis://e2", NULL};
    const char *const file_env[] = {config_env, NULL};
    const char *const flags[] = {
        "--redis-url", "redis://a:1", "--redis-url=redis://b:2,redis://c:3",
        "--web-root",  "/",           NULL};
    const char *const one[] = {"--redis-url", "redis://:pa,ss@h:7/3", "--web-root", "/", NULL};
    const char *const bare[] = {"--web-root", "/", NULL};
    char err[ERRLEN];
    struct run r;

    (void)state;
    snprintf(config_env, sizeof(config_env), "HERALD_CONFIG=%s", file);
    expect_ok(&r, flags, env);
    assert_int_equal(config_resolve(&r.cfg, err, sizeof(err)), 0);
    assert_int_equal(r.cfg.redis_shards, 3);
    assert_string_equal(r.cfg.redis_urls[0], "redis://a:1");
    assert_string_equal(r.cfg.redis_urls[2], "redis://c:3");
    assert_null(r.cfg.redis_urls[3]);
    assert_string_equal(r.cfg.redis_shard_names[1], "redis://b:2/0");
    run_free(&r);

    expect_ok(&r, bare, env);
    assert_int_equal(config_resolve(&r.cfg, err, sizeof(err)), 0);
    assert_int_equal(r.cfg.redis_shards, 2);
    assert_string_equal(r.cfg.redis_urls[1], "redis://e2");
    run_free(&r);

    expect_ok(&r, bare, file_env);
    assert_int_equal(config_resolve(&r.cfg, err, sizeof(err)), 0);
    assert_int_equal(r.cfg.redis_shards, 2);
    assert_string_equal(r.cfg.redis_shard_names[0], "redis://10.0.0.1:6379/0");
    assert_string_equal(r.cfg.redis_shard_names[1], "redis://10.0.0.2:6380/1");
    run_free(&r);

    /* one URL: as before, a comma in its password included */
    expect_ok(&r, one, no_env);
    assert_int_equal(config_resolve(&r.cfg, err, sizeof(err)), 0);
    assert_int_equal(r.cfg.redis_shards, 1);
    assert_string_equal(r.cfg.redis_urls[0], "redis://:pa,ss@h:7/3");
    assert_string_equal(r.cfg.redis_shard_names[0], "redis://h:7/3");
    run_free(&r);

    /* without Redis: no shards */
    expect_ok(&r, bare, no_env);
    assert_int_equal(config_resolve(&r.cfg, err, sizeof(err)), 0);
    assert_int_equal(r.cfg.redis_shards, 0);
    assert_null(r.cfg.redis_urls);
    run_free(&r);
    remove_temp(file);
}

static void redis_url_list_errors(void **state)
{
    static const struct {
        const char *value, *want;
    } bad[] = {
        {"redis://h:1,redis://H:1/0", "entries 1 and 2 are both redis://h:1/0"},
        {"redis://a:s3cret@h,redis://x:99999", "entry 2: the port"},
        {"redis://a:s3cret@,redis://x", "entry 1: the host"},
        {"redis://h,redis://", "entry 2"},
        {"http://x", "--redis-url: must start with redis://"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *const args[] = {"--redis-url", bad[i].value, "--web-root", "/", NULL};
        char err[ERRLEN];
        struct run r;

        expect_ok(&r, args, no_env);
        assert_int_equal(config_resolve(&r.cfg, err, sizeof(err)), -1);
        if (!strstr(err, bad[i].want))
            print_error("%s: '%s', wanted '%s'\n", bad[i].value, err, bad[i].want);
        assert_non_null(strstr(err, bad[i].want));
        assert_null(strstr(err, "s3cret"));
        run_free(&r);
    }
    {
        char *file = temp_file("{\"redis-url\": [\"redis://a\", 7]}");
        const char *const args[] = {"--config", file, NULL};

        expect_error(args, no_env, "every entry of the array");
        remove_temp(file);
    }
}

static void help_and_version(void **state)
{
    struct run r;

    (void)state;
    {
        const char *const args[] = {"--help", NULL};

        run(&r, args, no_env);
        assert_int_equal(r.rc, CONFIG_EXIT);
        assert_non_null(strstr(r.out, "usage:"));
        assert_non_null(strstr(r.out, "--client-rate"));
        assert_non_null(strstr(r.out, "HERALD_CLIENT_RATE"));
        assert_non_null(strstr(r.out, "--config"));
        assert_non_null(strstr(r.out, HERALD_VERSION));
        run_free(&r);
    }
    {
        /* --help wins over what follows it, even a bad value */
        const char *const args[] = {"--client-rate", "5", "-h", "--client-rate", "0", NULL};

        run(&r, args, no_env);
        assert_int_equal(r.rc, CONFIG_EXIT);
        assert_non_null(strstr(r.out, "usage:"));
        run_free(&r);
    }
    {
        const char *const args[] = {"--version", NULL};

        run(&r, args, no_env);
        assert_int_equal(r.rc, CONFIG_EXIT);
        assert_string_equal(r.out, "herald " HERALD_VERSION "\n");
        run_free(&r);
    }
    {
        /* config_usage prints the same text */
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        const char *const args[] = {"--help", NULL};

        config_usage(f);
        fclose(f);
        run(&r, args, no_env);
        assert_string_equal(r.out, buf);
        run_free(&r);
        free(buf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults),
        cmocka_unit_test(unrelated_environment_is_ignored),
        cmocka_unit_test(environment_sets_every_kind),
        cmocka_unit_test(flag_forms),
        cmocka_unit_test(later_flag_wins),
        cmocka_unit_test(precedence_flag_env_file_default),
        cmocka_unit_test(config_flag_replaces_config_env),
        cmocka_unit_test(file_values_as_strings_and_numbers),
        cmocka_unit_test(uint_bounds),
        cmocka_unit_test(bounds_from_environment_and_file),
        cmocka_unit_test(not_a_number),
        cmocka_unit_test(addresses),
        cmocka_unit_test(enums_and_strings),
        cmocka_unit_test(unknown_option),
        cmocka_unit_test(missing_value),
        cmocka_unit_test(config_file_errors),
        cmocka_unit_test(error_after_strings_were_set),
        cmocka_unit_test(redis_url_lists),
        cmocka_unit_test(redis_url_list_errors),
        cmocka_unit_test(help_and_version),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

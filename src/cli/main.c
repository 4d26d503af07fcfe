/*
 * nvent: the command table (CLI-1, §17 table), argument parsing with the
 * common flags --config, --url, --json, --help, and dispatch. Each command
 * lives in a cmd_*.c file of this folder.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

#define COMMON_FLAGS "config=,url=,json,help"

static const struct cli_cmd commands[] = {
    { "serve", cmd_serve, 0, 0, "port=,strict", "[--port N] [--strict]",
      "discover, build, validate, run the engine and the HTTP server", 1 },
    { "dev", cmd_dev, 0, 0, "port=,strict", "[--port N] [--strict]",
      "as serve, watching the functions folder", 1 },
    { "build", cmd_build, 0, 0, "", "",
      "compile stale C functions and report each", 1 },
    { "flows", cmd_flows, 0, 0, "strict", "[--strict]",
      "flows with entry, step count, levels and warnings", 1 },
    { "start", cmd_start, 1, 2, "", "<flow> [json | -]",
      "start a run, print its run id", 1 },
    { "runs", cmd_runs, 1, 1, "status=,limit=,offset=",
      "<flow> [--status S] [--limit N] [--offset N]", "list runs", 1 },
    { "events", cmd_events, 1, 1, "follow", "<runId> [--follow]",
      "print a run's events", 1 },
    { "cancel", cmd_cancel, 2, 2, "", "<flow> <runId>", "cancel a run", 1 },
    { "enqueue", cmd_enqueue, 2, 2, "name=,opts=",
      "<queue> <json | -> [--name NAME] [--opts JSON]",
      "enqueue a plain job, print its id", 1 },
    { "queues", cmd_queues, 0, 0, "", "",
      "queues with counts and paused flag", 1 },
    { "schedule add", cmd_schedule_add, 1, 1,
      "cron=,tz=,limit=,delay=,input=,misfire=",
      "<flow> (--cron EXPR [--tz TZ] [--limit N] | --delay MS) "
      "[--input JSON] [--misfire once|skip]",
      "create a schedule, print its id", 1 },
    { "schedule list", cmd_schedule_list, 0, 1, "", "[<flow>]",
      "list schedules", 1 },
    { "schedule rm", cmd_schedule_rm, 2, 2, "", "<flow> <id>",
      "delete a schedule", 1 },
    { "rebuild-index", cmd_rebuild_index, 0, 0, "flow=", "[--flow NAME]",
      "rebuild run indexes", 1 },
    { "version", cmd_version, 0, 0, "", "", "print the version", 0 },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void
print_overview(FILE *f)
{
    fprintf(f, "usage: nvent <command> [arguments] [flags]\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-15s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\ncommon flags: --config PATH, --url URL, --json, --help\n"
               "`nvent <command> --help` describes one command.\n");
}

static void
print_usage(FILE *f, const struct cli_cmd *cmd)
{
    fprintf(f, "usage: nvent %s%s%s [--config PATH] [--url URL] [--json]\n",
            cmd->name, cmd->usage[0] ? " " : "", cmd->usage);
    fprintf(f, "%s\n", cmd->help);
}

int
cli_usage(const struct cli *c, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "nvent: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    if (c != NULL && c->cmd != NULL)
        print_usage(stderr, c->cmd);
    else
        print_overview(stderr);
    return CLI_USAGE;
}

const char *
cli_flag(const struct cli *c, const char *name)
{
    for (int i = 0; i < c->nflag; i++) {
        if (strcmp(c->flag[i], name) == 0)
            return c->val[i];
    }
    return NULL;
}

int
cli_has(const struct cli *c, const char *name)
{
    for (int i = 0; i < c->nflag; i++) {
        if (strcmp(c->flag[i], name) == 0)
            return 1;
    }
    return 0;
}

/* Is 'name' in the flag list; *takes_value when written "name=". */
static int
flag_known(const char *list, const char *name, size_t n, int *takes_value)
{
    while (*list != '\0') {
        size_t m = strcspn(list, ",");
        int v = m > 0 && list[m - 1] == '=';

        if ((size_t)(m - (size_t)v) == n && strncmp(list, name, n) == 0) {
            *takes_value = v;
            return 1;
        }
        list += m + (list[m] == ',');
    }
    return 0;
}

static int
parse_flag(struct cli *c, int argc, char **argv, int *i)
{
    const char *arg = argv[*i] + 2, *eq = strchr(arg, '=');
    size_t n = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
    int takes = 0;

    if (!flag_known(COMMON_FLAGS, arg, n, &takes) &&
        !flag_known(c->cmd->flags, arg, n, &takes))
        return cli_usage(c, "unknown flag '--%.*s'", (int)n, arg);
    if (c->nflag == CLI_MAX_FLAGS)
        return cli_usage(c, "too many flags");
    if (takes) {
        if (eq != NULL)
            c->val[c->nflag] = eq + 1;
        else if (*i + 1 < argc)
            c->val[c->nflag] = argv[++*i];
        else
            return cli_usage(c, "flag '--%.*s' needs a value", (int)n, arg);
    } else if (eq != NULL) {
        return cli_usage(c, "flag '--%.*s' takes no value", (int)n, arg);
    }
    c->flag[c->nflag++] = strndup(arg, n);
    return CLI_OK;
}

static const struct cli_cmd *
find_command(int argc, char **argv, int *used)
{
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const char *name = commands[i].name, *sp = strchr(name, ' ');

        if (sp == NULL && strcmp(argv[1], name) == 0) {
            *used = 2;
            return &commands[i];
        }
        if (sp != NULL && argc > 2 &&
            strncmp(argv[1], name, (size_t)(sp - name)) == 0 &&
            argv[1][sp - name] == '\0' && strcmp(argv[2], sp + 1) == 0) {
            *used = 3;
            return &commands[i];
        }
    }
    return NULL;
}

static int
run(struct cli *c, int argc, char **argv)
{
    int used = 0, rc, only_pos = 0;

    if (argc < 2)
        return cli_usage(NULL, "missing command");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        print_overview(stdout);
        return CLI_OK;
    }
    if (strcmp(argv[1], "--version") == 0)
        return cmd_version(c);
    c->cmd = find_command(argc, argv, &used);
    if (c->cmd == NULL) {
        if (strcmp(argv[1], "schedule") == 0)
            return cli_usage(NULL, "schedule needs a subcommand: add, list "
                                   "or rm");
        return cli_usage(NULL, "unknown command '%s'", argv[1]);
    }
    for (int i = used; i < argc; i++) {
        if (!only_pos && strcmp(argv[i], "--") == 0) {
            only_pos = 1;
        } else if (!only_pos && strncmp(argv[i], "--", 2) == 0) {
            if ((rc = parse_flag(c, argc, argv, &i)) != CLI_OK)
                return rc;
        } else if (!only_pos && argv[i][0] == '-' && argv[i][1] != '\0') {
            if (strcmp(argv[i], "-h") == 0) {
                print_usage(stdout, c->cmd);
                return CLI_OK;
            }
            return cli_usage(c, "unknown flag '%s'", argv[i]);
        } else {
            if (c->npos == CLI_MAX_POS || c->npos == c->cmd->max_pos)
                return cli_usage(c, "unexpected argument '%s'", argv[i]);
            c->pos[c->npos++] = argv[i];
        }
    }
    if (cli_has(c, "help")) {
        print_usage(stdout, c->cmd);
        return CLI_OK;
    }
    if (c->npos < c->cmd->min_pos)
        return cli_usage(c, "missing argument");
    c->json = cli_has(c, "json");
    if (c->cmd->needs_config && (rc = cli_config_load(c)) != CLI_OK)
        return rc;
    return c->cmd->fn(c);
}

int
main(int argc, char **argv)
{
    struct cli c = {0};
    int rc = run(&c, argc, argv);

    fflush(stdout);
    cli_engine_close(&c);
    nv_config_free(c.cfg);
    for (int i = 0; i < c.nflag; i++)
        free((char *)c.flag[i]);
    free(c.config_file);
    free(c.project_dir);
    free(c.url);
    free(c.token);
    return rc;
}

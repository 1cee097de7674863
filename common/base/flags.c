/* flags.c - see flags.h. */
#include "flags.h"

#include <stdio.h>
#include <string.h>

void fl_usage(const char *cmd, const char *synopsis, const fl_spec *specs)
{
    printf("usage: pslora %s %s\n\nflags:\n", cmd, synopsis);
    for (const fl_spec *s = specs; s->name; s++) {
        const char *arg = s->type == FL_BOOL ? "" : s->type == FL_STR ? " S" : " N";
        printf("  --%s%s%*s%s%s\n", s->name, arg, (int)(22 - strlen(s->name) - strlen(arg)), "",
               s->help, s->required ? " (required)" : "");
    }
}

static fl_spec *find(fl_spec *specs, const char *name, size_t len)
{
    for (fl_spec *s = specs; s->name; s++)
        if (strlen(s->name) == len && strncmp(s->name, name, len) == 0)
            return s;
    return NULL;
}

static int set_value(fl_spec *s, const char *val, pl_err *e)
{
    if (s->type == FL_STR) {
        *(const char **)s->dst = val;
        return 0;
    }
    if (s->type == FL_INT) {
        long v;
        if (pl_parse_long(val, &v) != 0)
            return pl_errf(e, "--%s: expected an integer, got '%s'", s->name, val);
        if (s->min <= s->max && (v < s->min || v > s->max))
            return pl_errf(e, "--%s: must be between %.0f and %.0f, got %ld", s->name, s->min,
                           s->max, v);
        *(long *)s->dst = v;
        return 0;
    }
    float f;
    if (pl_parse_float(val, &f) != 0)
        return pl_errf(e, "--%s: expected a number, got '%s'", s->name, val);
    if (s->min <= s->max && (f < s->min || f > s->max))
        return pl_errf(e, "--%s: must be between %g and %g, got %g", s->name, s->min, s->max, f);
    *(float *)s->dst = f;
    return 0;
}

int fl_parse(const char *cmd, const char *synopsis, fl_spec *specs, int argc, char **argv,
             const char **positional, int n_pos, pl_err *e)
{
    int npos = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fl_usage(cmd, synopsis, specs);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) {
            if (npos >= n_pos)
                return pl_errf(e, "unexpected argument '%s' (see pslora %s --help)", a, cmd);
            positional[npos++] = a;
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        fl_spec *s = find(specs, name, len);
        if (!s)
            return pl_errf(e, "--%.*s: unknown flag (see pslora %s --help)", (int)len, name, cmd);
        if (s->seen)
            return pl_errf(e, "--%s: given twice", s->name);
        s->seen = 1;
        if (s->type == FL_BOOL) {
            if (eq)
                return pl_errf(e, "--%s: takes no value", s->name);
            *(int *)s->dst = 1;
            continue;
        }
        const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!val)
            return pl_errf(e, "--%s: missing value", s->name);
        if (set_value(s, val, e) != 0)
            return -1;
    }
    for (fl_spec *s = specs; s->name; s++)
        if (s->required && !s->seen)
            return pl_errf(e, "--%s: required (see pslora %s --help)", s->name, cmd);
    return 0;
}

int fl_seen(const fl_spec *specs, const char *name)
{
    for (const fl_spec *s = specs; s->name; s++)
        if (strcmp(s->name, name) == 0)
            return s->seen;
    return 0;
}

/* train_ps.c - `pslora train` under mpirun: roles, start-up checks, handshake.
 *
 * Start-up is collective so that one bad rank stops every rank with one line:
 * each rank loads what its role needs, then an allreduce of the status; then
 * every worker sends every server its Hello, rank 0 names the first
 * difference, and a second allreduce stops everyone on a mismatch.  With
 * --resume, rank 0 picks the checkpoint (checking it against the run's
 * fingerprint), tells every rank its step and directory, and every server
 * loads it.  No collective waits longer than --timeout.  With --compute
 * bf16 the workers of a node load into one shared copy of the bf16 weights
 * (worker/node_shared.h), freed at the end by every one of them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fingerprint.h"
#include "full.h"
#include "node_shared.h"
#include "ps_server.h"
#include "ps_worker.h"
#include "server.h"
#include "train.h"
#include "transport.h"
#include "worker.h"

typedef struct {
    const train_config *t;
    int rank, world, S, W;
    MPI_Comm world_comm, servers;
    int *owner;
    worker w;           /* worker ranks */
    ns_node ns;         /* worker ranks: the node's shared bf16 weights */
    model m;            /* server ranks: the model (mapped) for the fingerprint */
    lora_layout L;      /* server ranks */
    server s;
    run_log log;        /* rank 0 */
    run_fp fp;          /* rank 0: the fingerprint checkpoints record */
    server_ckpt ck;     /* servers */
    long start;         /* first step */
} ps_run;

/* Waits for a collective at most --timeout seconds; past it this rank names
 * what it waited for and ends the job (a peer is stuck or gone). */
static void wait_or_abort(ps_run *r, MPI_Request *q, const char *what)
{
    pl_err e;
    if (tp_wait(q, 1, (double)r->t->timeout, what, &e) != 0) {
        fprintf(stderr, "pslora train: rank %d: %s\n", r->rank, e.msg);
        MPI_Abort(r->world_comm, 1);
    }
}

/* Every rank learns whether any rank failed; a failing rank prints its line. */
static int all_ok(ps_run *r, int ok, const pl_err *e)
{
    if (!ok)
        fprintf(stderr, "pslora train: %s\n", e->msg);
    int all;
    MPI_Request q;
    MPI_Iallreduce(&ok, &all, 1, MPI_INT, MPI_MIN, r->world_comm, &q);
    wait_or_abort(r, &q, "start-up: the status of every rank");
    return all;
}

static const lora_layout *layout(ps_run *r) { return r->rank >= r->S ? &r->w.L : &r->L; }
static const model *the_model(ps_run *r) { return r->rank >= r->S ? &r->w.m : &r->m; }

/* Every rank deals the tensors to the servers the same way (server_assign). */
static int assign(ps_run *r, pl_err *e)
{
    r->owner = malloc(((size_t)lora_n_tensors(layout(r)) + 1) * sizeof(int));
    if (!r->owner)
        return pl_errf(e, "out of memory");
    server_assign(layout(r), r->S, r->owner);
    return 0;
}

static int load_role(ps_run *r, pl_err *e)
{
    if (r->rank >= r->S) {   /* bf16: one copy of the weights per node */
        int rc = worker_init(&r->w, r->t, ns_store(&r->ns), e);
        ns_settle(&r->ns);
        return rc == 0 ? assign(r, e) : rc;
    }
    if (trainconf_load_model(r->t, &r->m, MODEL_FP32, 0, NULL, e) != 0)
        return -1;
    float *p;
    if (trainconf_trained(r->t, &r->m, &r->L, &p, e) != 0)
        return -1;
    if (assign(r, e) != 0) {
        free(p);
        return -1;
    }
    unsigned char *mine = malloc((size_t)lora_n_tensors(&r->L) + 1);   /* servers own only theirs */
    for (int id = 0; mine && id < lora_n_tensors(&r->L); id++)
        mine[id] = r->owner[id] == r->rank;
    int rc = mine ? server_init(&r->s, r->t, &r->L, p, mine, e)
                  : (free(p), pl_errf(e, "out of memory"));
    free(mine);
    return rc;
}

/* Workers send their Hello to every server; servers compare with their own. */
static int handshake(ps_run *r, pl_err *e)
{
    msg_hello mine, theirs;
    msg_buf buf = {0};
    msg_hello_init(&mine, r->rank, r->world);
    int rc = fp_build(&mine, r->t, the_model(r), layout(r), e);
    if (rc == 0 && r->rank >= r->S) {
        rc = msg_encode_hello(&buf, &mine, e);
        MPI_Request *q = malloc((size_t)r->S * sizeof *q);
        for (int s = 0; rc == 0 && s < r->S; s++)
            tp_isend(r->world_comm, s, TP_TAG_HELLO, &buf, &q[s]);
        if (rc == 0)
            rc = tp_wait(q, r->S, (double)r->t->timeout, "hello", e);
        free(q);
    }
    for (int wi = 0; rc == 0 && r->rank < r->S && wi < r->W; wi++) {
        int src = r->S + wi;
        rc = tp_recv(r->world_comm, src, TP_TAG_HELLO, &buf, (double)r->t->timeout, NULL, NULL,
                     NULL, e);
        if (rc == 0) {
            memset(&theirs, 0, sizeof theirs);
            rc = msg_decode_hello(buf.data, buf.len, src, &theirs, e);
            if (rc == 0)
                rc = msg_hello_compare(&theirs, &mine, e);
            msg_hello_free(&theirs);
        }
    }
    msg_hello_free(&mine);
    msg_buf_free(&buf);
    return rc;
}

/* --resume: rank 0 picks and loads the checkpoint, every rank learns its
 * step, the other servers load the same directory. */
static int resume(ps_run *r, pl_err *e)
{
    char dir[4200] = "";
    int ok = 1;
    if (r->rank == 0)
        ok = server_resume(&r->s, &r->ck, &r->start, dir, sizeof dir, run_warn, e) == 0;
    if (!all_ok(r, ok, e))
        return -1;
    MPI_Request q;
    MPI_Ibcast(&r->start, 1, MPI_LONG, 0, r->world_comm, &q);
    wait_or_abort(r, &q, "start-up: the checkpoint's step");
    MPI_Ibcast(dir, (int)sizeof dir, MPI_CHAR, 0, r->world_comm, &q);
    wait_or_abort(r, &q, "start-up: the checkpoint's directory");
    ok = 1;
    if (r->rank > 0 && r->rank < r->S && dir[0]) {
        long step;
        int refused;
        server_ckpt mine = r->ck;
        mine.n_fp = 0;   /* rank 0 checked the fingerprint */
        ok = server_load_checkpoint(&r->s, &mine, dir, &step, &refused, e) == 0;
        if (ok && step != r->start)
            ok = 0, pl_errf(e, "%s: step %ld, rank 0 read %ld", dir, step, r->start);
        if (!ok) {
            pl_err why = *e;
            pl_errf(e, "rank %d: %s", r->rank, why.msg);
        }
    }
    return all_ok(r, ok, e) ? 0 : -1;
}

static void on_step(void *ctx, void *row) { run_step(ctx, row); }
static void on_eval(void *ctx, long step, double val, long ntok)
{
    metrics_eval(&((run_log *)ctx)->log, step, val, ntok);
}

static int run_roles(ps_run *r, pl_err *e)
{
    if (r->rank >= r->S) {
        ps_worker_env env = {r->world_comm, r->S, r->W, r->rank, r->owner, r->start};
        return ps_worker_run(&r->w, &env, e);
    }
    ps_server_env env = {r->world_comm, r->servers, r->S, r->W, r->rank, r->owner,
                         NULL, NULL, NULL, r->start, NULL};
    if (r->rank == 0)
        env.on_step = on_step, env.on_eval = on_eval, env.ctx = &r->log, env.ckpt = &r->ck;
    return ps_server_run(&r->s, &env, e);
}

static void release(ps_run *r)
{
    run_fingerprint_free(&r->fp);
    if (r->rank >= r->S) {
        worker_free(&r->w);
        ns_free(&r->ns);   /* after the model that wraps its window */
    } else {
        server_free(&r->s);
        lora_layout_free(&r->L);
        model_free(&r->m);
    }
    free(r->owner);
    if (r->servers != MPI_COMM_NULL)
        MPI_Comm_free(&r->servers);
}

/* The summary's memory: the largest peak resident set (getrusage, real
 * RSS) of any rank, of any server rank and of any worker rank, on rank 0. */
static void peak_memory(ps_run *r)
{
    double mine = run_peak_rss_mb(), in[3] = {mine, 0, 0}, out[3] = {0};
    in[r->rank < r->S ? 1 : 2] = mine;
    MPI_Request q;
    MPI_Ireduce(in, out, 3, MPI_DOUBLE, MPI_MAX, 0, r->world_comm, &q);
    wait_or_abort(r, &q, "the end: every rank's peak memory");
    r->log.rss_mb = out[0], r->log.rss_server_mb = out[1], r->log.rss_worker_mb = out[2];
}

int train_ps(const train_config *t, MPI_Comm comm)
{
    ps_run r = {.t = t, .world_comm = comm, .servers = MPI_COMM_NULL};
    pl_err e = {""};
    MPI_Comm_rank(comm, &r.rank);
    MPI_Comm_size(comm, &r.world);
    r.S = (int)t->servers;
    r.W = r.world - r.S;
    if (r.S >= r.world) {
        if (r.rank == 0)
            fprintf(stderr, "pslora train: --servers: %d servers leave no worker among %d ranks\n",
                    r.S, r.world);
        return 2;
    }
    MPI_Comm_split(comm, r.rank < r.S ? 0 : MPI_UNDEFINED, r.rank, &r.servers);
    ns_init(&r.ns, comm, r.rank >= r.S, (double)t->timeout);
    int ok = load_role(&r, &e) == 0;
    if (!ok) {   /* name the rank that could not start */
        pl_err why = e;
        pl_errf(&e, "rank %d: %s", r.rank, why.msg);
    }
    if (!all_ok(&r, ok, &e)) {
        release(&r);
        return 1;
    }
    ok = handshake(&r, &e) == 0;
    /* servers all see a bad Hello: only rank 0 prints it */
    if (!ok && r.rank != 0 && r.rank < r.S)
        ok = 1, e.msg[0] = 0;
    if (!all_ok(&r, ok, &e)) {
        release(&r);
        return 1;
    }
    /* rank 0 records the run's fingerprint in its checkpoints */
    ok = r.rank != 0 || run_fingerprint(&r.fp, t, &r.m, &r.L, r.W, &e) == 0;
    r.ck = (server_ckpt){t->out, &the_model(&r)->cfg, r.fp.kv, r.fp.n, r.W, &r.m};
    if (!all_ok(&r, ok, &e) || (t->resume && resume(&r, &e) != 0)) {
        release(&r);
        return 1;
    }
    ok = r.rank != 0 || run_begin(&r.log, t, r.world, r.W, r.start, &e) == 0;
    if (!all_ok(&r, ok, &e)) {
        release(&r);
        return 1;
    }
    int rc = run_roles(&r, &e);
    if (rc == 0)
        peak_memory(&r);
    if (rc == 0 && r.rank == 0) {
        if (r.L.full)   /* the model saved: its trained weights are the gathered ones */
            full_attach(r.L.full, &r.m, r.s.params);
        rc = run_finish(&r.log, &r.L, &r.m, r.s.params, &e);
    }
    if (rc != 0) {
        fprintf(stderr, "pslora train: rank %d: %s\n", r.rank, e.msg);
        MPI_Abort(comm, 1);
    }
    release(&r);
    return 0;
}

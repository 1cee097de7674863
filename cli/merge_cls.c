/* merge_cls.c - the classifier of a BERT merge (see merge_cls.h). */
#include "merge_cls.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file.h"

static const char *const KEYS[2] = {"classifier.weight", "classifier.bias"};

int mc_prepare(model_config *c, const char *adapter, long num_labels, pl_err *e)
{
    lora_peft_config pc;
    if (c->arch != ARCH_BERT || lora_read_peft_config(adapter, NULL, &pc, e) != 0)
        return c->arch != ARCH_BERT ? 0 : -1;
    if (pc.classifier)
        c->task = TASK_CLS;
    if (num_labels)
        c->num_labels = (int)num_labels;
    return 0;
}

/* 1 when the base holds the classifier (any file). */
static int base_has(const hf_files *s)
{
    int f;
    return hf_files_find(s, KEYS[0], &f) != NULL;
}

/* The adapter's tensor j (0 weight, 1 bias) in dtype d (malloc'd). */
static void *in_dtype(const lora_layout *L, const float *p, int j, st_dtype d)
{
    size_t nw = (size_t)L->n_labels * L->cls_in, n = j ? (size_t)L->n_labels : nw;
    const float *src = p + L->cls_off + (j ? nw : 0);
    size_t size = d == ST_F32 ? 4 : 2;
    unsigned char *out = malloc(n * size);
    for (size_t i = 0; out && i < n; i++) {
        if (d == ST_F32) {
            memcpy(out + 4 * i, &src[i], 4);
        } else {
            uint16_t h = d == ST_BF16 ? st_f32_to_bf16(src[i]) : st_f32_to_f16(src[i]);
            memcpy(out + 2 * i, &h, 2);
        }
    }
    return out;
}

int mc_entries(const hf_files *s, int k, const lora_layout *L, const float *p, st_entry *ent,
               int *n, void **owned, pl_err *e)
{
    if (!L->n_labels)
        return 0;
    const st_file *f = &s->files[k];
    int64_t want[2][2] = {{L->n_labels, L->cls_in}, {L->n_labels, 0}};
    if (!base_has(s) && k == 0) {
        for (int j = 0; j < 2; j++) {
            owned[j] = in_dtype(L, p, j, ST_F32);
            ent[*n + j] = (st_entry){KEYS[j], ST_F32, 2 - j, {want[j][0], want[j][1]}, owned[j]};
        }
        *n += 2;
        return owned[0] && owned[1] ? 0 : pl_errf(e, "%s: out of memory", f->path);
    }
    for (int i = 0; i < f->n; i++)
        for (int j = 0; j < 2; j++) {
            const st_tensor *t = &f->t[i];
            if (strcmp(t->name, KEYS[j]) != 0)
                continue;
            if (t->ndim != 2 - j || t->shape[0] != want[j][0] || (!j && t->shape[1] != want[j][1]))
                return pl_errf(e, "%s: tensor %s does not have the adapter's %d labels x %d",
                               f->path, t->name, L->n_labels, L->cls_in);
            owned[j] = in_dtype(L, p, j, t->dtype);
            if (!owned[j])
                return pl_errf(e, "%s: out of memory", f->path);
            ent[i].data = owned[j];
        }
    return 0;
}

int mc_index(const hf_files *s, const lora_layout *L, char **index, pl_err *e)
{
    *index = NULL;
    if (!L->n_labels || !s->index_text || base_has(s))
        return 0;
    cJSON *j = cJSON_ParseWithLength(s->index_text, s->index_len);
    cJSON *map = j ? cJSON_GetObjectItemCaseSensitive(j, "weight_map") : NULL;
    if (!cJSON_IsObject(map)) {
        cJSON_Delete(j);
        return pl_errf(e, "the base's %s has no weight_map", HF_INDEX_NAME);
    }
    for (int k = 0; k < 2; k++)
        cJSON_AddStringToObject(map, KEYS[k], s->names[0]);
    *index = cJSON_Print(j);
    cJSON_Delete(j);
    return *index ? 0 : pl_errf(e, "out of memory");
}

int mc_config(const char *model_dir, const lora_layout *L, char **config, pl_err *e)
{
    char path[4096];
    *config = NULL;
    if (!L->n_labels)
        return 0;
    snprintf(path, sizeof path, "%s/config.json", model_dir);
    cJSON *j = hf_read_json_object(path, HF_JSON_MAX, e);
    if (!j)
        return -1;
    cJSON_ReplaceItemInObjectCaseSensitive(j, "architectures", cJSON_CreateStringArray(
        (const char *[]){"BertForSequenceClassification"}, 1));
    if (!cJSON_GetObjectItemCaseSensitive(j, "architectures"))
        cJSON_AddItemToObject(j, "architectures", cJSON_CreateStringArray(
            (const char *[]){"BertForSequenceClassification"}, 1));
    cJSON *id2 = cJSON_CreateObject(), *l2i = cJSON_CreateObject();
    for (int k = 0; k < L->n_labels; k++) {
        char id[16], lab[32];
        snprintf(id, sizeof id, "%d", k);
        snprintf(lab, sizeof lab, "LABEL_%d", k);
        cJSON *old = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(j, "id2label"), id);   /* keep the base's names */
        if (cJSON_IsString(old))
            snprintf(lab, sizeof lab, "%s", old->valuestring);
        cJSON_AddStringToObject(id2, id, lab);
        cJSON_AddNumberToObject(l2i, lab, k);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(j, "id2label");
    cJSON_DeleteItemFromObjectCaseSensitive(j, "label2id");
    cJSON_DeleteItemFromObjectCaseSensitive(j, "num_labels");
    cJSON_AddItemToObject(j, "id2label", id2);
    cJSON_AddItemToObject(j, "label2id", l2i);
    *config = cJSON_Print(j);
    cJSON_Delete(j);
    return *config ? 0 : pl_errf(e, "out of memory");
}

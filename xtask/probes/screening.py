"""Screening probe over llb's feature cache (research aid, not part of any test or table).

Reads the cached DINOv2-S blocks 3,5 features of one benchmark-v2 category (run
`cargo xtask reproduce` first so the cache holds them), draws 30 anomalies from the pool into
the 120 training normals (alpha = 0.2) for seeds 0..2, and prints the screening AUROC of:
  knn10 stage1   K = 3 sub-models, 1-NN to a random 10 % patch bank (llb's default screener)
  gauss stage1   K = 3 sub-models, Mahalanobis distance to one Gaussian over the subset's patches
  gauss all-in   one Gaussian over every training patch, scoring its own training images
and, for reference, both models' test I-AUROC when fitted on the clean normals only.
Image score: mean of the top 1 % patch scores. Usage (numpy, safetensors, scikit-learn):
  python xtask/probes/screening.py grass [~/.cache/llb/features]
"""
import glob, os, sys
import numpy as np
from safetensors import safe_open
from sklearn.metrics import roc_auc_score

cat = sys.argv[1]
root = os.path.expanduser(sys.argv[2] if len(sys.argv) > 2 else "~/.cache/llb/features")
F = {}
for f in glob.glob(os.path.join(root, "*", "*.safetensors")):
    with safe_open(f, "np") as s:
        md = s.metadata()
        if md["input_size_px"] != "224x224" or md["encoder"] != "dinov2-vits14[3,5]":
            continue
        if not md["sample_id"].startswith(cat + "/"):
            continue
        x = np.concatenate([s.get_tensor("layer.0"), s.get_tensor("layer.1")], 0)
        F[md["sample_id"]] = x.reshape(x.shape[0], -1).T.astype(np.float32)
normals = sorted(k for k in F if "/train/good/" in k)
pool = sorted(k for k in F if "/pool/" in k)
test = sorted(k for k in F if "/test/" in k)
print(cat, "normals", len(normals), "pool", len(pool), "test", len(test))


def top(s, frac=0.01):
    return np.sort(s)[-max(1, int(round(len(s) * frac))):].mean()


def knn_fit(x, rng):
    return x[rng.choice(len(x), max(1, len(x) // 10), replace=False)]


def knn_score(bank, qs):
    bb = (bank ** 2).sum(1)
    return np.array([top(np.sqrt(np.maximum(((q ** 2).sum(1)[:, None] + bb[None] - 2 * q @ bank.T).min(1), 0))) for q in qs])


def gauss_fit(x, rng=None, shrink=0.01):
    c = np.cov(x, rowvar=False)
    c += shrink * np.trace(c) / c.shape[0] * np.eye(c.shape[0])
    return x.mean(0), np.linalg.inv(c)


def gauss_score(m, qs):
    mu, p = m
    return np.array([top(np.sqrt(np.einsum("ij,jk,ik->i", q - mu, p, q - mu))) for q in qs])


def stage1(ids, fit, score, rng, k=3):
    parts = np.array_split(rng.permutation(len(ids)), k)
    s = np.zeros(len(ids))
    for part in parts:
        model = fit(np.concatenate([F[ids[i]] for i in part]), rng)
        others = sorted(set(range(len(ids))) - set(part.tolist()))
        s[others] += score(model, [F[ids[i]] for i in others]) / (k - 1)
    return s


res = {}
for seed in range(3):
    rng = np.random.default_rng(seed)
    ids = normals + [pool[i] for i in rng.choice(len(pool), 30, replace=False)]
    y = np.array([0] * len(normals) + [1] * 30)
    for name, fit, score in [("knn10", knn_fit, knn_score), ("gauss", gauss_fit, gauss_score)]:
        res.setdefault(name + " stage1", []).append(roc_auc_score(y, stage1(ids, fit, score, np.random.default_rng(seed))))
    m = gauss_fit(np.concatenate([F[i] for i in ids]))
    res.setdefault("gauss all-in", []).append(roc_auc_score(y, gauss_score(m, [F[i] for i in ids])))
yt = np.array([0 if "/good/" in k else 1 for k in test])
xn = np.concatenate([F[i] for i in normals])
res["knn10 clean test"] = [roc_auc_score(yt, knn_score(knn_fit(xn, np.random.default_rng(0)), [F[i] for i in test]))]
res["gauss clean test"] = [roc_auc_score(yt, gauss_score(gauss_fit(xn), [F[i] for i in test]))]
for k, v in res.items():
    print(f"{cat} {k:18s} {np.mean(v):.3f}  {np.round(v, 3)}")

"""The networks and their fitting: the 1-D CNN (and the baselines it is compared with), ONNX export
with preprocessing inside the graph, and :func:`fit_scorer` for a model zoo member."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from zeek_ml.features.conn import FeatureSpec
from zeek_ml.training.data import FAMILIES


def _build_torch_model(spec: FeatureSpec, mean: np.ndarray, std: np.ndarray, arch: dict):
    import torch
    from torch import nn

    log1p_idx = [i for i, f in enumerate(spec.features) if f.kind == "log1p"]
    log_idx = [i for i, f in enumerate(spec.features) if f.kind == "log"]
    flag_idx = [i for i, f in enumerate(spec.features) if f.kind == "flag"]
    cat = [(i, len(f.vocab)) for i, f in enumerate(spec.features) if f.kind == "categorical"]

    class ConnCNN(nn.Module):
        """Pre-processing + 1-D CNN; forward(raw features) -> P(malicious) [N]."""

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("log1p_idx", torch.tensor(log1p_idx, dtype=torch.long))
            self.register_buffer("log_idx", torch.tensor(log_idx, dtype=torch.long))
            self.register_buffer("flag_idx", torch.tensor(flag_idx, dtype=torch.long))
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
            self.cat_idx = [i for i, _ in cat]
            self.cat_size = [v for _, v in cat]
            # one-hot x learned matrix == embedding lookup (a Gather in ONNX)
            self.emb = nn.ModuleList(nn.Embedding(v, arch["emb_dim"]) for _, v in cat)
            width = len(log1p_idx) + len(log_idx) + len(flag_idx) + len(cat) * arch["emb_dim"]
            self.width = width
            k, s, ch = arch["kernel"], arch["stride"], arch["channels"]
            self.conv = nn.Conv1d(1, ch, kernel_size=k, stride=s)
            self.bn = nn.BatchNorm1d(ch)
            conv_out = (width - k) // s + 1
            self.fc = nn.Linear(ch * conv_out + width, arch["hidden"])
            self.drop = nn.Dropout(arch["dropout"])
            self.out = nn.Linear(arch["hidden"], 1)

        def preprocess(self, x):
            a = torch.log1p(torch.clamp(torch.index_select(x, 1, self.log1p_idx), min=0.0))
            b = torch.log(torch.clamp(torch.index_select(x, 1, self.log_idx), min=1e-6))
            num = (torch.cat([a, b], dim=1) - self.mean) / self.std
            flags = torch.index_select(x, 1, self.flag_idx)
            embs = []
            for j, (i, v) in enumerate(zip(self.cat_idx, self.cat_size, strict=True)):
                code = torch.clamp(x[:, i], 0, v - 1).to(torch.long)
                embs.append(self.emb[j](code))
            return torch.cat([num, flags, *embs], dim=1)

        def logits(self, x):
            z = self.preprocess(x)
            c = torch.relu(self.bn(self.conv(z.unsqueeze(1))))
            h = torch.cat([c.flatten(1), z], dim=1)
            h = self.drop(torch.relu(self.fc(h)))
            return self.out(h).squeeze(1)

        def forward(self, x):
            return torch.sigmoid(self.logits(x))

    return ConnCNN()


def _numeric_stats(spec: FeatureSpec, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cols = []
    for kind in ("log1p", "log"):
        idx = [i for i, f in enumerate(spec.features) if f.kind == kind]
        v = X[:, idx].astype(np.float64)
        cols.append(np.log1p(np.maximum(v, 0)) if kind == "log1p" else np.log(np.maximum(v, 1e-6)))
    t = np.concatenate(cols, axis=1)
    mean = t.mean(0)
    std = t.std(0)
    std[std < 1e-6] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def fit_torch(
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    *,
    spec: FeatureSpec,
    seed: int,
    epochs: int,
    batch_size: int,
    lr: float,
    arch: dict,
    local_unknown_prob: float,
    log: Callable[[str], None] = print,
):
    """Weighted BCE + Adam, deterministic on CPU. Returns the eval-mode torch model."""
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True)
    mean, std = _numeric_stats(spec, X)
    model = _build_torch_model(spec, mean, std, arch)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    Xt, yt, wt = torch.from_numpy(X), torch.from_numpy(y), torch.from_numpy(w)
    lo, lr_ = spec.index("local_orig"), spec.index("local_resp")
    unknown = float(spec.features[lo].vocab.index("unknown"))
    gen = torch.Generator().manual_seed(seed)
    n = len(X)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * ((n + batch_size - 1) // batch_size))
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for s in range(0, n, batch_size):
            idx = perm[s : s + batch_size]
            xb = Xt[idx].clone()
            if local_unknown_prob > 0:  # many sensors leave local_orig/resp unset
                m = torch.rand(len(idx), generator=gen) < local_unknown_prob
                xb[m, lo] = unknown
                xb[m, lr_] = unknown
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model.logits(xb), yt[idx], weight=wt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        log(f"epoch {ep + 1}/{epochs} loss {total / n:.4f}")
    model.eval()
    return model


def export_onnx(
    model, spec: FeatureSpec, path: str, metadata: Mapping[str, str], outputs: Sequence[str] = ("score",)
) -> None:
    """Export to ONNX (input ``features`` [N, F] float32, output ``score`` [N], maybe ``family``) + metadata."""
    import onnx
    import torch

    dummy = torch.zeros(4, len(spec), dtype=torch.float32)
    tmp = path + ".tmp"
    torch.onnx.export(
        model,
        (dummy,),
        tmp,
        input_names=["features"],
        output_names=list(outputs),
        dynamic_axes={"features": {0: "N"}, **{o: {0: "N"} for o in outputs}},
        opset_version=17,
        dynamo=False,
    )
    m = onnx.load(tmp)
    os.remove(tmp)
    del m.metadata_props[:]
    for k, v in metadata.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    m.producer_name = "zeek-ml"
    onnx.checker.check_model(m)
    onnx.save(m, path)


def ort_scores(path: str, X: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"features": X})[0].reshape(-1)


def fit_hgb(X: np.ndarray, y: np.ndarray, w: np.ndarray, spec: FeatureSpec, seed: int):
    """HistGradientBoosting baseline on the same raw features (categoricals native)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    cat = [f.kind == "categorical" for f in spec.features]
    clf = HistGradientBoostingClassifier(
        max_iter=300, learning_rate=0.1, categorical_features=cat, random_state=seed, early_stopping=False
    )
    clf.fit(X, y, sample_weight=w)
    return clf


#: the networks compared in the LOCO run (same raw features, same folds)
ZOO: tuple[str, ...] = ("hgb", "logreg", "mlp", "secids_cnn", "ours")


def build_net(kind: str, spec: FeatureSpec, mean: np.ndarray, std: np.ndarray, n_families: int = 0, arch=None):
    """A torch network over raw features: same pre-processing (log, standardise, embeddings) for every kind.

    ``mlp``: the seed MLP (Linear 128 -> BN -> ReLU -> Dropout 0.3 -> Linear 64 -> BN -> Linear 1);
    ``secids_cnn``: the SecIDS-CNN shape (Conv1D 32 k3 -> BN -> Conv1D 64 k3 -> BN -> Flatten -> Dense 128 ->
    Dropout 0.3 -> Dense 1); ``ours``: conv over features with a wide skip (conn-cnn-v1's shape), plus an
    optional family head. ``forward`` returns P(malicious) [N] (and family probabilities with a family head).
    """
    import torch
    from torch import nn

    arch = {"emb_dim": 3, "channels": 8, "kernel": 5, "stride": 2, "hidden": 32, "dropout": 0.3, **(arch or {})}
    base = _build_torch_model(spec, mean, std, arch)  # pre-processing + "ours" layers

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base = base
            w = base.width
            self.kind = kind
            if kind == "mlp":
                self.body = nn.Sequential(
                    nn.Linear(w, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.3),
                    nn.Linear(128, 64), nn.BatchNorm1d(64), nn.Linear(64, 1),
                )  # fmt: skip
            elif kind == "secids_cnn":
                self.body = nn.Sequential(
                    nn.Conv1d(1, 32, 3), nn.BatchNorm1d(32), nn.ReLU(),
                    nn.Conv1d(32, 64, 3), nn.BatchNorm1d(64), nn.ReLU(), nn.Flatten(),
                    nn.Linear(64 * (w - 4), 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 1),
                )  # fmt: skip
            elif kind == "ours_seq":  # plus a convolution over time: the originator's previous connections
                off, nf, k = arch["seq"]
                self.seq = (int(off), int(nf), int(k))
                self.seq_conv = nn.Conv1d(int(nf), 16, 3, padding=1)
                self.fc2 = nn.Linear(base.fc.in_features + 16, arch["hidden"])
            elif kind != "ours":
                raise ValueError(f"unknown network kind {kind!r}")
            self.fam = nn.Linear(arch["hidden"], n_families) if (kind.startswith("ours") and n_families) else None

        def heads(self, x):
            if self.kind in ("ours", "ours_seq"):
                b = self.base
                z = b.preprocess(x)
                c = torch.relu(b.bn(b.conv(z.unsqueeze(1))))
                if self.kind == "ours":
                    h = b.drop(torch.relu(b.fc(torch.cat([c.flatten(1), z], dim=1))))
                else:
                    off, nf, k = self.seq
                    sq = x[:, off : off + nf * k].reshape(-1, nf, k)
                    t = torch.relu(self.seq_conv(sq)).amax(dim=2)
                    h = b.drop(torch.relu(self.fc2(torch.cat([c.flatten(1), z, t], dim=1))))
                return b.out(h).squeeze(1), (self.fam(h) if self.fam is not None else None)
            z = self.base.preprocess(x)
            if self.kind == "secids_cnn":
                z = z.unsqueeze(1)
            return self.body(z).squeeze(1), None

        def logits(self, x):
            return self.heads(x)[0]

        def forward(self, x):
            logit, fam = self.heads(x)
            if fam is None:
                return torch.sigmoid(logit)
            return torch.sigmoid(logit), torch.softmax(fam, dim=1)

    return Net()


def fit_net(
    kind: str,
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    *,
    spec: FeatureSpec,
    seed: int = 0,
    epochs: int = 6,
    batch_size: int = 512,
    fam: np.ndarray | None = None,
    n_families: int = 0,
    local_unknown_prob: float = 0.5,
    arch: Mapping | None = None,
    log: Callable[[str], None] = print,
):
    """Train one network of the zoo (weighted BCE; + family cross-entropy on malicious rows for ``ours``).

    ``mlp`` and ``secids_cnn``: Adam 1e-3 with ReduceLROnPlateau(patience 5, factor 0.1) on the epoch loss, as
    the seed projects; ``ours``: Adam 3e-3 with cosine decay and local_orig/resp masking (as conn-cnn-v1).
    ``arch["distil"] = k`` (``ours``): first an ensemble of ``k`` networks as the teacher, then one network
    (seed ``seed``) trained, on the same rows and masking, to the teacher's P(malicious) (weighted BCE on
    soft targets) and family probabilities (cross-entropy on malicious rows): one network's cost at run time.
    """

    distil = int((arch or {}).get("distil", 0))
    if kind.startswith("ours") and distil > 1:
        plain = {k: v for k, v in (arch or {}).items() if k != "distil"}
        teacher = fit_net(kind, X, y, w, spec=spec, seed=seed, epochs=epochs, batch_size=batch_size, fam=fam,
                          n_families=n_families, local_unknown_prob=local_unknown_prob,
                          arch={**plain, "members": distil}, log=log)  # fmt: skip
        return _fit_one(kind, X, y, w, spec=spec, seed=seed, epochs=epochs, batch_size=batch_size, fam=fam,
                        n_families=n_families, local_unknown_prob=local_unknown_prob,
                        arch={**plain, "members": 1}, log=log, teacher=teacher)  # fmt: skip
    members = int((arch or {}).get("members", 1))
    if kind.startswith("ours") and members > 1:  # an ensemble of small CNNs: one graph, the mean of their probabilities
        one = {**(arch or {}), "members": 1}
        nets = [
            fit_net(kind, X, y, w, spec=spec, seed=seed + k, epochs=epochs, batch_size=batch_size, fam=fam,
                    n_families=n_families, local_unknown_prob=local_unknown_prob, arch=one, log=log)
            for k in range(members)
        ]  # fmt: skip
        return _ensemble(nets)
    return _fit_one(kind, X, y, w, spec=spec, seed=seed, epochs=epochs, batch_size=batch_size, fam=fam,
                    n_families=n_families, local_unknown_prob=local_unknown_prob, arch=arch, log=log)  # fmt: skip


def _fit_one(
    kind: str,
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    *,
    spec: FeatureSpec,
    seed: int,
    epochs: int,
    batch_size: int,
    fam: np.ndarray | None,
    n_families: int,
    local_unknown_prob: float,
    arch: Mapping | None,
    log: Callable[[str], None],
    teacher=None,
):
    """One network (see :func:`fit_net`); with ``teacher``, trained to its outputs instead of the labels."""
    import torch

    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    mean, std = _numeric_stats(spec, X)
    arch = {k: v for k, v in (arch or {}).items() if k not in ("members", "distil")}
    net = build_net(kind, spec, mean, std, n_families if fam is not None else 0, arch)
    ours = kind.startswith("ours")
    opt = torch.optim.Adam(net.parameters(), lr=3e-3 if ours else 1e-3)
    n = len(X)
    steps = epochs * ((n + batch_size - 1) // batch_size)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps) if ours else None
    plateau = None if ours else torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=5, factor=0.1)
    Xt, yt, wt = torch.from_numpy(X), torch.from_numpy(y), torch.from_numpy(w)
    ft = torch.from_numpy(fam.astype(np.int64)) if fam is not None else None
    lo, lr_ = spec.index("local_orig"), spec.index("local_resp")
    unknown = float(spec.features[lo].vocab.index("unknown"))
    gen = torch.Generator().manual_seed(seed)
    for ep in range(epochs):
        net.train()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for s in range(0, n, batch_size):
            idx = perm[s : s + batch_size]
            if len(idx) < 2:
                continue
            xb = Xt[idx].clone()
            if ours and local_unknown_prob > 0:
                m = torch.rand(len(idx), generator=gen) < local_unknown_prob
                xb[m, lo] = unknown
                xb[m, lr_] = unknown
            logit, flog = net.heads(xb)
            target, ftarget = yt[idx], (ft[idx] if ft is not None else None)
            if teacher is not None:
                with torch.no_grad():
                    out = teacher(xb)
                target, ftarget = (out[0], out[1]) if isinstance(out, tuple) else (out, ftarget)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, target, weight=wt[idx])
            if flog is not None and ftarget is not None:
                mal = yt[idx] > 0.5
                if mal.any():
                    loss = loss + 0.5 * torch.nn.functional.cross_entropy(flog[mal], ftarget[mal])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if cosine is not None:
                cosine.step()
            total += float(loss.detach()) * len(idx)
        if plateau is not None:
            plateau.step(total / n)
        log(f"  {kind} epoch {ep + 1}/{epochs} loss {total / n:.4f}")
    net.eval()
    return net


def _ensemble(nets: Sequence):
    """One module averaging the members' P(malicious) (and family probabilities)."""
    import torch
    from torch import nn

    class Ensemble(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.members = nn.ModuleList(nets)

        def forward(self, x):
            outs = [m(x) for m in self.members]
            if isinstance(outs[0], tuple):
                return tuple(torch.stack(parts).mean(0) for parts in zip(*outs, strict=True))
            return torch.stack(outs).mean(0)

    return Ensemble().eval()


def fit_logreg(X: np.ndarray, y: np.ndarray, w: np.ndarray, spec: FeatureSpec, seed: int):
    """Logistic regression on the same raw features: log-scaled numerics, flags, one-hot categoricals."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    num = [i for i, f in enumerate(spec.features) if f.kind in ("log1p", "log")]
    flag = [i for i, f in enumerate(spec.features) if f.kind == "flag"]
    cat = [i for i, f in enumerate(spec.features) if f.kind == "categorical"]
    cats = [list(range(len(spec.features[i].vocab))) for i in cat]
    pre = ColumnTransformer(
        [
            ("num", make_pipeline(FunctionTransformer(lambda v: np.log1p(np.maximum(v, 0))), StandardScaler()), num),
            ("flag", "passthrough", flag),
            ("cat", OneHotEncoder(categories=cats, handle_unknown="ignore"), cat),
        ]
    )
    clf = make_pipeline(pre, LogisticRegression(max_iter=500, C=1.0, random_state=seed))
    clf.fit(X, y, logisticregression__sample_weight=w)
    return clf


def fit_scorer(
    kind: str,
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    *,
    spec: FeatureSpec,
    seed: int = 0,
    epochs: int = 6,
    fam: np.ndarray | None = None,
    arch: Mapping | None = None,
    log: Callable[[str], None] = print,
):
    """Fit one zoo member; returns (score function raw X -> P(malicious), family function or None, fitted)."""
    if kind == "hgb":
        m = fit_hgb(X, y, w, spec, seed)
        return (lambda Z: m.predict_proba(Z)[:, 1].astype(np.float32)), None, m
    if kind == "logreg":
        m = fit_logreg(X, y, w, spec, seed)
        return (lambda Z: m.predict_proba(Z)[:, 1].astype(np.float32)), None, m
    import torch

    net = fit_net(
        kind, X, y, w, spec=spec, seed=seed, epochs=epochs, fam=fam, n_families=len(FAMILIES), arch=arch, log=log
    )

    def score(Z: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = []
            for s in range(0, len(Z), 65536):
                o = net(torch.from_numpy(Z[s : s + 65536]))
                out.append(o[0] if isinstance(o, tuple) else o)
            return torch.cat(out).numpy() if out else np.zeros(0, np.float32)

    def family(Z: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(Z))[1].numpy()

    return score, (family if (kind.startswith("ours") and fam is not None) else None), net

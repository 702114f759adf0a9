"""Built-in SSL methods, one file each; the registry (``monai_transfer.ssl.registry``) registers this table on its
first lookup.

The table is data: a method's class is imported only when the method is built.
"""

from __future__ import annotations

from monai_transfer.ssl.method_spec import CNN_FAMILIES, MethodSpec

__all__ = ["BUILTIN_METHODS"]

_M = "monai_transfer.ssl.methods"

BUILTIN_METHODS: tuple[MethodSpec, ...] = (
    # --- joint embedding: contrastive -------------------------------------------------------------------------
    MethodSpec(
        "simclr",
        f"{_M}.simclr:SimCLR",
        "contrastive",
        paper="Chen et al. 2020, A Simple Framework for Contrastive Learning of Visual Representations, arXiv:2002.05709",
        description="two views, MLP projector, NT-Xent over the (gathered) batch",
        defaults={"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-6},
        chance_loss="log(2 * batch - 1)",  # each of 2B rows picks its positive among 2B - 1 candidates
        min_batch=2,
        min_batch_scope="global",
        min_batch_why="NT-Xent takes its negatives from the other samples of the batch (with one, the loss is 0)",
    ),
    MethodSpec(
        "moco_v2",
        f"{_M}.moco:MoCoV2",
        "contrastive",
        paper="Chen et al. 2020, Improved Baselines with Momentum Contrastive Learning, arXiv:2003.04297",
        description="momentum key encoder, FIFO queue of negatives, InfoNCE",
        defaults={"optimizer": "sgd", "lr": 0.03, "weight_decay": 1e-4, "teacher_momentum": (0.999, 0.999)},
        chance_loss="log(queue_size + 1)",  # the positive among itself and the queue's negatives
    ),
    MethodSpec(
        "moco_v3",
        f"{_M}.moco:MoCoV3",
        "contrastive",
        paper="Chen, Xie and He 2021, An Empirical Study of Training Self-Supervised Vision Transformers, "
        "arXiv:2104.02057",
        description="momentum encoder, predictor, symmetric InfoNCE within the batch (no queue)",
        defaults={"optimizer": "adamw", "lr": 1.5e-4, "weight_decay": 0.1, "teacher_momentum": (0.99, 1.0)},
        chance_loss="4 * temperature * log(batch)",  # ctr(q1, k2) + ctr(q2, k1), each 2 * tau * CE over B keys
        min_batch=2,
        min_batch_scope="global",
        min_batch_why="InfoNCE takes its negatives from the other keys of the batch (with one, the loss is 0)",
    ),
    # --- joint embedding: non-contrastive ---------------------------------------------------------------------
    MethodSpec(
        "byol",
        f"{_M}.byol:BYOL",
        "non-contrastive",
        paper="Grill et al. 2020, Bootstrap Your Own Latent, arXiv:2006.07733",
        description="online predictor regresses the EMA target's projection (negative cosine)",
        defaults={"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-6, "teacher_momentum": (0.99, 1.0)},
    ),
    MethodSpec(
        "simsiam",
        f"{_M}.simsiam:SimSiam",
        "non-contrastive",
        paper="Chen and He 2021, Exploring Simple Siamese Representation Learning, arXiv:2011.10566",
        description="predictor and stop-gradient, no teacher, no negatives",
        defaults={"optimizer": "sgd", "lr": 0.05, "weight_decay": 1e-4},
    ),
    MethodSpec(
        "barlow_twins",
        f"{_M}.barlow_twins:BarlowTwins",
        "non-contrastive",
        paper="Zbontar et al. 2021, Barlow Twins: Self-Supervised Learning via Redundancy Reduction, arXiv:2103.03230",
        description="cross-correlation of the two views' embeddings driven to the identity",
        defaults={"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-6},
        min_batch=2,
        min_batch_scope="rank",  # each rank standardises its own batch; only the correlation matrix is averaged
        min_batch_why="its loss standardises each embedding over the batch (one sample has no variance)",
    ),
    MethodSpec(
        "vicreg",
        f"{_M}.vicreg:VICReg",
        "non-contrastive",
        paper="Bardes, Ponce and LeCun 2022, VICReg, arXiv:2105.04906",
        description="invariance + variance + covariance terms on the expander output",
        defaults={"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-6},
        min_batch=2,
        min_batch_scope="global",  # variance and covariance over the gathered batch under torchrun
        min_batch_why="its variance and covariance terms are taken over the batch (one sample has no variance)",
    ),
    MethodSpec(
        "dino",
        f"{_M}.dino:DINO",
        "non-contrastive",
        paper="Caron et al. 2021, Emerging Properties in Self-Supervised Vision Transformers, arXiv:2104.14294",
        description="self-distillation: student matches the centred, sharpened EMA teacher over multi-crop views",
        defaults={
            "optimizer": "adamw",
            "lr": 5e-4,
            "weight_decay": 0.04,
            "weight_decay_end": 0.4,
            "teacher_momentum": (0.996, 1.0),
            # teacher temperature 0.04 -> 0.07 over the first 30 epochs (the paper's ViT-S/16 recipe); a shorter run
            # warms up over all of its epochs
            "teacher_temperature": (0.04, 0.07, 30.0),
        },
        view_defaults={"vit": {"local_roi_size": "@roi_size"}},  # our ViT takes only its img_size
    ),
    # --- reconstructive ---------------------------------------------------------------------------------------
    MethodSpec(
        "mae",
        f"{_M}.mae:MAE",
        "reconstructive",
        families=("vit",),
        paper="He et al. 2022, Masked Autoencoders Are Scalable Vision Learners, arXiv:2111.06377",
        description="encode the visible patches only; a light decoder reconstructs the masked ones",
        defaults={"optimizer": "adamw", "lr": 1.5e-4, "weight_decay": 0.05},
        view_defaults={"vit": {"mask_patch_size": "$list(@network_def.patch_size)"}},  # mask exactly the ViT's patches
        reason="MAE drops masked patch tokens before the encoder, which needs a ViT (a CNN has no tokens).",
    ),
    MethodSpec(
        "simmim",
        f"{_M}.simmim:SimMIM",
        "reconstructive",
        families=CNN_FAMILIES + ("swin",),
        paper="Xie et al. 2022, SimMIM: A Simple Framework for Masked Image Modeling, arXiv:2111.09886",
        description="masked patches replaced by a learned token; a one-layer head predicts their pixels (L1)",
        defaults={"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05},
        reason="SimMIM here targets hierarchical encoders (CNN, Swin); for a plain ViT use MAE.",
    ),
    MethodSpec(
        "models_genesis",
        f"{_M}.models_genesis:ModelsGenesis",
        "reconstructive",
        families=CNN_FAMILIES + ("swin",),
        paper="Zhou et al. 2021, Models Genesis, Medical Image Analysis 67:101840, arXiv:2004.07882",
        description="restore images after non-linear intensity, local shuffling, in- and out-painting (U-Net)",
        defaults={"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-5},
        reason="Models Genesis restores the image with a U-Net decoder over the encoder's feature pyramid.",
    ),
    # --- medical multi-task ------------------------------------------------------------------------------------
    MethodSpec(
        "swin_unetr_ssl",
        f"{_M}.swin_multitask:SwinUNETRPretraining",
        "multi-task",
        families=("swin",) + CNN_FAMILIES,
        paper="Tang et al. 2022, Self-Supervised Pre-Training of Swin Transformers for 3D Medical Image Analysis, "
        "arXiv:2111.14791",
        description="rotation prediction + contrastive coding + masked-volume in-painting",
        min_batch=2,
        min_batch_scope="global",
        min_batch_why="its contrastive term takes its negatives from the batch (with one, that third of the loss is 0)",
        defaults={"optimizer": "adamw", "lr": 4e-4, "weight_decay": 1e-5},
        reason="the in-painting head upsamples the deepest feature map of a hierarchical encoder.",
    ),
)

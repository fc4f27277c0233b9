"""Programs written against segment_anything's public API, each taking the package as `sa` so that
the same code runs on segment_anything and on basam (a namespace of the names a client imports:
official.official_package / basam_package). They follow the documented usage of the official
notebooks (predictor_example, automatic_mask_generator_example, onnx_model_example) and of two
clients (micro-sam's hand-made embeddings, segment-geospatial's tiles), written anew."""

from functools import partial

import numpy as np
import torch


def build_by_hand(sa, checkpoint, size):
    """A SAM assembled from sa.modeling's classes with segment_anything's keyword arguments, as a
    client with its own model sizes writes it, then the checkpoint loaded strictly."""
    m, grid = sa.modeling, size["img_size"] // 16
    sam = m.Sam(
        image_encoder=m.ImageEncoderViT(
            depth=size["depth"],
            embed_dim=size["embed_dim"],
            img_size=size["img_size"],
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=size["num_heads"],
            patch_size=16,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=size["global_attn_indexes"],
            window_size=size["window_size"],
            out_chans=size["prompt_dim"],
        ),
        prompt_encoder=m.PromptEncoder(
            embed_dim=size["prompt_dim"],
            image_embedding_size=(grid, grid),
            input_image_size=(size["img_size"], size["img_size"]),
            mask_in_chans=size["mask_in_chans"],
        ),
        mask_decoder=m.MaskDecoder(
            num_multimask_outputs=3,
            transformer=m.TwoWayTransformer(
                depth=2, embedding_dim=size["prompt_dim"], mlp_dim=size["mlp_dim"], num_heads=size["decoder_heads"]
            ),
            transformer_dim=size["prompt_dim"],
            iou_head_depth=3,
            iou_head_hidden_dim=size["iou_hidden"],
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    sam.load_state_dict(torch.load(checkpoint))
    sam.eval()
    return sam


def predictor_notebook(sa, sam, image):
    """predictor_example: a point, points + the previous low-res mask, a box, a box with a
    negative point, batched boxes (transform.apply_boxes_torch + predict_torch) and the model's
    own batched forward over two images."""
    out = {}
    predictor = sa.SamPredictor(sam)
    predictor.set_image(image)
    h, w = image.shape[:2]
    point, label = np.array([[w * 0.4, h * 0.45]]), np.array([1])
    masks, scores, logits = predictor.predict(point_coords=point, point_labels=label, multimask_output=True)
    out["point"] = (masks, scores)

    points, labels = np.array([[w * 0.4, h * 0.45], [w * 0.7, h * 0.3]]), np.array([1, 1])
    mask_input = logits[np.argmax(scores), :, :]
    masks, scores, _ = predictor.predict(
        point_coords=points, point_labels=labels, mask_input=mask_input[None, :, :], multimask_output=False
    )
    out["points+mask"] = (masks, scores)

    box = np.array([w * 0.1, h * 0.2, w * 0.6, h * 0.9])
    masks, scores, _ = predictor.predict(point_coords=None, point_labels=None, box=box[None, :], multimask_output=False)
    out["box"] = (masks, scores)
    masks, scores, _ = predictor.predict(
        point_coords=np.array([[w * 0.3, h * 0.5]]), point_labels=np.array([0]), box=box, multimask_output=False
    )
    out["box+point"] = (masks, scores)

    boxes = torch.tensor(
        [[w * 0.1, h * 0.1, w * 0.5, h * 0.5], [w * 0.4, h * 0.3, w * 0.9, h * 0.8], [0, 0, w - 1, h - 1]],
        device=predictor.device,
    )
    transformed = predictor.transform.apply_boxes_torch(boxes, image.shape[:2])
    masks, scores, _ = predictor.predict_torch(
        point_coords=None, point_labels=None, boxes=transformed, multimask_output=False
    )
    out["batched boxes"] = (masks.cpu().numpy(), scores.cpu().numpy())

    resize = sa.ResizeLongestSide(sam.image_encoder.img_size)

    def prepare_image(img):
        return torch.as_tensor(resize.apply_image(img), device=sam.device).permute(2, 0, 1).contiguous()

    second = np.ascontiguousarray(image[::-1])
    batched_input = [
        {
            "image": prepare_image(img),
            "boxes": resize.apply_boxes_torch(boxes, img.shape[:2]),
            "original_size": img.shape[:2],
        }
        for img in (image, second)
    ]
    for i, result in enumerate(sam(batched_input, multimask_output=False)):
        out[f"sam forward {i}"] = (result["masks"].cpu().numpy(), result["iou_predictions"].cpu().numpy())
    return out


def generator_notebook(sa, sam, image, **tuned):
    """automatic_mask_generator_example: the generator with its defaults, or with the tuned
    settings given (crops, small-region removal); the records' masks and scores, largest first as
    the notebook draws them."""
    generator = sa.SamAutomaticMaskGenerator(sam, **tuned)
    records = generator.generate(image)
    return sorted(records, key=lambda r: r["area"], reverse=True)


def onnx_notebook(sa, sam, image, path):
    """onnx_model_example: export the decoder with SamOnnxModel, run it with onnxruntime on the
    predictor's embedding for a point, then a box with a point and the previous low-res mask."""
    import onnxruntime

    onnx_model = sa.SamOnnxModel(sam, return_single_mask=True)
    embed_dim = sam.prompt_encoder.embed_dim
    embed_size = sam.prompt_encoder.image_embedding_size
    mask_input_size = [4 * x for x in embed_size]
    dummy_inputs = {
        "image_embeddings": torch.randn(1, embed_dim, *embed_size, dtype=torch.float),
        "point_coords": torch.randint(low=0, high=sam.image_encoder.img_size, size=(1, 5, 2), dtype=torch.float),
        "point_labels": torch.randint(low=0, high=4, size=(1, 5), dtype=torch.float),
        "mask_input": torch.randn(1, 1, *mask_input_size, dtype=torch.float),
        "has_mask_input": torch.tensor([1], dtype=torch.float),
        "orig_im_size": torch.tensor([1500, 2250], dtype=torch.float),
    }
    with torch.no_grad():
        # dynamo=False: the TorchScript exporter the notebook was written for (torch 2.13's default
        # exporter needs onnxscript)
        torch.onnx.export(
            onnx_model,
            tuple(dummy_inputs.values()),
            str(path),
            export_params=True,
            verbose=False,
            opset_version=17,
            do_constant_folding=True,
            input_names=list(dummy_inputs.keys()),
            output_names=["masks", "iou_predictions", "low_res_masks"],
            dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
            dynamo=False,
        )
    session = onnxruntime.InferenceSession(str(path))
    predictor = sa.SamPredictor(sam)
    predictor.set_image(image)
    embedding = predictor.get_image_embedding().cpu().numpy()
    h, w = image.shape[:2]

    def run(coords, labels, mask_input, has_mask):
        coords = predictor.transform.apply_coords(coords, image.shape[:2]).astype(np.float32)
        inputs = {
            "image_embeddings": embedding,
            "point_coords": coords,
            "point_labels": labels.astype(np.float32),
            "mask_input": mask_input.astype(np.float32),
            "has_mask_input": np.array([has_mask], np.float32),
            "orig_im_size": np.array(image.shape[:2], dtype=np.float32),
        }
        masks, scores, low_res = session.run(None, inputs)
        return masks > predictor.model.mask_threshold, scores, low_res

    point = np.array([[w * 0.4, h * 0.45]])
    coords = np.concatenate([point, np.array([[0.0, 0.0]])], axis=0)[None, :, :]
    labels = np.concatenate([np.array([1]), np.array([-1])], axis=0)[None, :]
    masks, scores, low_res = run(coords, labels, np.zeros((1, 1, *mask_input_size)), 0)
    out = {"point": (masks, scores)}
    box = np.array([w * 0.1, h * 0.2, w * 0.6, h * 0.9])
    coords = np.concatenate([np.array([[w * 0.3, h * 0.5]]), box.reshape(2, 2)], axis=0)[None, :, :]
    labels = np.concatenate([np.array([0]), np.array([2, 3])], axis=0)[None, :]
    masks, scores, _ = run(coords, labels, low_res, 1)
    out["box+point+mask"] = (masks, scores)
    return out


def micro_sam_embedding(sa, sam, image, points, labels):
    """micro-sam's way: the embedding computed by hand (predictor.transform.apply_image,
    sam.preprocess, sam.image_encoder), written into the predictor's state, then predict."""
    predictor = sa.SamPredictor(sam)
    resized = predictor.transform.apply_image(image)
    x = torch.as_tensor(resized, device=predictor.device).permute(2, 0, 1).contiguous()[None]
    with torch.no_grad():
        features = sam.image_encoder(sam.preprocess(x.float()))
    predictor.reset_image()
    predictor.original_size = image.shape[:2]
    predictor.input_size = x.shape[-2:]
    predictor.features = features
    predictor.is_image_set = True
    masks, scores, _ = predictor.predict(point_coords=points, point_labels=labels, multimask_output=False)
    return features, masks, scores


def geospatial_tiles(sa, sam, image, tile, **settings):
    """segment-geospatial's way: the generator on every tile of a large raster, each tile's masks
    pasted into one label image at the tile's place (later tiles over earlier ones)."""
    generator = sa.SamAutomaticMaskGenerator(sam, **settings)
    labels = np.zeros(image.shape[:2], dtype=np.int32)
    per_tile, next_id = [], 1
    for y in range(0, image.shape[0], tile):
        for x in range(0, image.shape[1], tile):
            part = np.ascontiguousarray(image[y : y + tile, x : x + tile])
            records = sorted(generator.generate(part), key=lambda r: r["area"], reverse=True)
            per_tile.append(records)
            for record in records:
                region = labels[y : y + part.shape[0], x : x + part.shape[1]]
                region[record["segmentation"]] = next_id
                next_id += 1
    return labels, per_tile

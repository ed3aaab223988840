"""Model metadata: what an ONNX model must carry for the runtime to use it.

The exporter (``training.export``) writes one JSON entry, key :data:`METADATA_KEY`, into the ONNX
file's ``metadata_props``; the runtime reads it with
``InferenceSession.get_modelmeta().custom_metadata_map`` and builds its whole configuration from
it: no labels in code, no side files. A model without it, or made for another feature recipe, is
refused before any audio is processed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .adaptation import EmbeddingAdaptation, OutputPrior, SpeakerNorm
from .features import FEATURE_VERSION, READABLE_VERSIONS, FeatureConfig

#: Key of the JSON entry in the ONNX ``metadata_props``.
METADATA_KEY = "stream_ser"
#: Version of the metadata layout itself.
METADATA_FORMAT = 1


class ModelMetadataError(ValueError):
    """The model's metadata is missing, malformed, or made for another feature recipe."""


@dataclass(frozen=True)
class ModelMetadata:
    """Everything the runtime needs to know about a model.

    Attributes:
        labels: Class names in the order of the model's output.
        feature_config: The feature recipe the model was trained on.
        input_name: Name of the graph input; shape ``(batch, n_mels, n_frames, 1)``, float32 log-mel.
        output_name: Name of the graph output; shape ``(batch, len(labels))``, float32
            probabilities (softmax inside the graph).
        provenance: Free-form facts about how the model was made (data, split, commit, date,
            library versions); shown by ``stream-ser info``, not interpreted.
        speaker_norm: For a model trained on speaker-normalised log-mels, the prior of the
            causal normalisation the engine applies per channel
            (:class:`~stream_ser.adaptation.SpeakerNorm`); None for a model that takes the
            recipe's log-mel as is.
        output_prior: The model's mean log-probabilities on its training speakers, the prior of
            output adaptation (:class:`~stream_ser.adaptation.OutputAdapter`); None for a model
            that does not carry one (it cannot be adapted at its output).
        embedding_adaptation: The prior of causal speaker normalisation of the network's
            embedding and the head applied after it
            (:class:`~stream_ser.adaptation.EmbeddingAdaptation`), the default adaptation of a
            model that carries it; None for a model without one. Its ``output`` names a second
            graph output, float32 ``(batch, dim)``.
    """

    labels: tuple[str, ...]
    feature_config: FeatureConfig
    input_name: str = "log_mel"
    output_name: str = "probabilities"
    provenance: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    speaker_norm: SpeakerNorm | None = None
    output_prior: OutputPrior | None = None
    embedding_adaptation: EmbeddingAdaptation | None = None

    def to_json(self) -> str:
        """Serialise to the JSON string stored under :data:`METADATA_KEY`."""
        data = {
            "format": METADATA_FORMAT,
            "labels": list(self.labels),
            "feature_config": self.feature_config.to_dict(),
            "input_name": self.input_name,
            "output_name": self.output_name,
            "provenance": self.provenance,
        }
        if self.speaker_norm is not None:
            data["speaker_norm"] = self.speaker_norm.to_dict()
        if self.output_prior is not None:
            data["output_prior"] = self.output_prior.to_dict()
        if self.embedding_adaptation is not None:
            data["embedding_adaptation"] = self.embedding_adaptation.to_dict()
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelMetadata":
        """Parse and validate the JSON entry.

        Raises:
            ModelMetadataError: If the text is not JSON, a field is missing or has the wrong
                type, the labels are empty or repeated, the feature recipe version is not one this
                runtime reads (:data:`~stream_ser.features.READABLE_VERSIONS`), or a field of
                the recipe lies outside its range (:class:`~stream_ser.features.FeatureConfig`;
                the one-line message names the field), or an optional entry (``speaker_norm``,
                ``output_prior``, ``embedding_adaptation``) is invalid or does not match the
                recipe or the labels (the message names the entry).
        """
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:  # also a too long integer, or nesting too deep
            raise ModelMetadataError(f"metadata is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ModelMetadataError("metadata must be a JSON object")
        if data.get("format") != METADATA_FORMAT:
            raise ModelMetadataError(f"metadata format {data.get('format')!r} is not {METADATA_FORMAT}")
        labels = data.get("labels")
        if not isinstance(labels, list) or not labels or not all(isinstance(s, str) and s for s in labels):
            raise ModelMetadataError("metadata 'labels' must be a non-empty list of names")
        if len(set(labels)) != len(labels):
            raise ModelMetadataError(f"metadata 'labels' has repeated names: {labels}")
        cfg = data.get("feature_config")
        if not isinstance(cfg, dict):
            raise ModelMetadataError("metadata 'feature_config' is missing")
        if cfg.get("version") not in READABLE_VERSIONS:
            raise ModelMetadataError(
                f"model was trained on feature recipe version {cfg.get('version')!r}, "
                f"this stream-ser computes version {FEATURE_VERSION}; re-export or upgrade"
            )
        try:
            feature_config = FeatureConfig.from_dict(cfg)
        except (TypeError, ValueError) as exc:
            raise ModelMetadataError(f"metadata 'feature_config': {exc}") from None
        for key in ("input_name", "output_name"):
            if not isinstance(data.get(key), str):
                raise ModelMetadataError(f"metadata '{key}' is missing")
        provenance = data.get("provenance", {})
        if not isinstance(provenance, dict):
            raise ModelMetadataError("metadata 'provenance' must be an object")
        speaker_norm = _optional_entry(data, "speaker_norm", SpeakerNorm.from_dict)
        if speaker_norm is not None and speaker_norm.n_mels != feature_config.n_mels:
            raise ModelMetadataError(
                f"metadata 'speaker_norm' has {speaker_norm.n_mels} bands, the recipe {feature_config.n_mels}"
            )
        output_prior = _optional_entry(data, "output_prior", OutputPrior.from_dict)
        if output_prior is not None and output_prior.n_classes != len(labels):
            raise ModelMetadataError(
                f"metadata 'output_prior' has {output_prior.n_classes} classes, 'labels' {len(labels)}"
            )
        embedding = _optional_entry(data, "embedding_adaptation", EmbeddingAdaptation.from_dict)
        if embedding is not None and embedding.n_classes != len(labels):
            raise ModelMetadataError(
                f"metadata 'embedding_adaptation' has a head of {embedding.n_classes} classes, 'labels' {len(labels)}"
            )
        if embedding is not None and embedding.output in (data["input_name"], data["output_name"]):
            raise ModelMetadataError(
                f"metadata 'embedding_adaptation' output {embedding.output!r} must be a graph output of its own, "
                "not the model's input or probabilities"
            )
        return cls(
            labels=tuple(labels),
            feature_config=feature_config,
            input_name=data["input_name"],
            output_name=data["output_name"],
            provenance=provenance,
            speaker_norm=speaker_norm,
            output_prior=output_prior,
            embedding_adaptation=embedding,
        )


def _optional_entry(data: dict[str, Any], key: str, parse: Any) -> Any:
    """``parse(data[key])`` for an optional object entry of the metadata; None when absent.

    Raises:
        ModelMetadataError: If the entry is not an object or ``parse`` refuses it (ValueError),
            naming the entry.
    """
    if data.get(key) is None:
        return None
    if not isinstance(data[key], dict):
        raise ModelMetadataError(f"metadata '{key}' must be an object")
    try:
        return parse(data[key])
    except ValueError as exc:
        raise ModelMetadataError(f"metadata '{key}': {exc}") from None

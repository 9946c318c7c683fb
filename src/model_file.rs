//! A model on disk, whatever its layout: a GGUF file (split or not) or a Hugging Face directory
//! (`config.json` + safetensors + `tokenizer.json`). The commands open every `--model` through
//! [`ModelFile::open`] and get the weights, tokenizer, chat template and adapter metadata from
//! it without caring which it is; the few that need GGUF bytes (merge, Ollama/LM Studio export,
//! tensor export) call [`ModelFile::gguf`], which refuses a directory clearly.

use std::path::{Path, PathBuf};

use crate::adapter::BaseInfo;
use crate::chat::ChatTemplate;
use crate::error::{Error, Result};
use crate::gguf::GgufModel;
use crate::model::{Model, ModelError};
use crate::tokenizer::Tokenizer;
use crate::weights::hf::{is_hf_path, HfModel};
use crate::weights::{GgufSource, WeightSource};

/// An opened model.
#[derive(Debug)]
pub enum ModelFile {
    /// A GGUF file (memory-mapped; every shard of a split model).
    Gguf(GgufModel),
    /// A Hugging Face model directory.
    Hf(Box<HfModel>),
}

impl ModelFile {
    /// Open `path`: a directory or a `config.json` is a Hugging Face model, anything else a GGUF.
    pub fn open(path: &Path) -> Result<Self> {
        if is_hf_path(path) {
            Ok(ModelFile::Hf(Box::new(HfModel::open(path)?)))
        } else {
            Ok(ModelFile::Gguf(GgufModel::open(path)?))
        }
    }

    /// The file or directory it was opened from.
    pub fn path(&self) -> PathBuf {
        match self {
            ModelFile::Gguf(g) => g.main().path().to_path_buf(),
            ModelFile::Hf(h) => h.dir().to_path_buf(),
        }
    }

    /// The weights by GGUF tensor name.
    pub fn source(&self) -> Box<dyn WeightSource<'_> + '_> {
        match self {
            ModelFile::Gguf(g) => Box::new(GgufSource::new(g)),
            ModelFile::Hf(h) => Box::new(h.source()),
        }
    }

    /// The model (weights borrowed from the memory maps), no adapters, f32 numerics.
    pub fn load(&self) -> std::result::Result<Model<'_>, ModelError> {
        Model::from_source(self.source().as_ref())
    }

    /// The tokenizer: GGUF metadata (llama.cpp's) or `tokenizer.json` (Hugging Face's).
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        match self {
            ModelFile::Gguf(g) => Tokenizer::from_gguf(g.main()).map_err(|e| Error::format(g.main().path(), e)),
            ModelFile::Hf(h) => Tokenizer::from_hf_dir(h.dir()),
        }
    }

    /// The model's own chat template (or the built-in one for its architecture).
    pub fn chat_template(&self, tok: &Tokenizer) -> Result<ChatTemplate> {
        match self {
            ModelFile::Gguf(g) => Ok(ChatTemplate::from_gguf_file(g.main())?),
            ModelFile::Hf(h) => ChatTemplate::from_hf_dir(h.dir(), h.config().arch.name(), tok),
        }
    }

    /// What an adapter records about its base.
    pub fn base_info(&self) -> BaseInfo {
        match self {
            ModelFile::Gguf(g) => BaseInfo::from_gguf(g.main()),
            ModelFile::Hf(h) => BaseInfo {
                architecture: h.config().arch.name().to_string(),
                name: Some(h.name()),
                file_name: h.dir().file_name().map(|n| n.to_string_lossy().into_owned()),
            },
        }
    }

    /// The GGUF, for what works on GGUF bytes only (`what` names it in the refusal).
    pub fn gguf(&self, what: &str) -> Result<&GgufModel> {
        match self {
            ModelFile::Gguf(g) => Ok(g),
            ModelFile::Hf(h) => Err(Error::usage(format!(
                "{what} needs a GGUF base model; {} is a Hugging Face directory (convert it with llama.cpp's convert_hf_to_gguf.py first)",
                h.dir().display()
            ))),
        }
    }
}

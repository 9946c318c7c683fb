//! Tokenizers read from GGUF metadata (byte-level BPE and SentencePiece). Being written.

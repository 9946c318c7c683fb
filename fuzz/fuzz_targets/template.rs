//! The chat-template renderer on arbitrary template source (the input up to the first NUL) and
//! message text (the rest): a rendering or a clear error, within the render budget.
#![no_main]

use finetune::chat::{ChatTemplate, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (src, content) = text.split_once('\0').unwrap_or((text, "hello"));
    let Ok(t) = ChatTemplate::from_source(src, "<s>", "</s>") else { return };
    let msgs = [Message::new("system", "sys"), Message::new("user", content), Message::new("assistant", "ok")];
    for gen in [false, true] {
        if let Err(e) = t.render(&msgs, gen) {
            let msg = e.to_string();
            assert!(!msg.chars().any(|c| c.is_control() && c != '\n'), "control character in {msg:?}");
        }
    }
});

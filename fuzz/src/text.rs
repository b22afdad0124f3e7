//! Target `text`: arbitrary strings through libnpu's kernel-language
//! parser. Every error names a line of the input (1-based) and a column;
//! whatever parses prints back to text that parses to the same graph.

pub fn run(data: &[u8]) {
    let Ok(src) = std::str::from_utf8(data) else { return };
    match npu::text::parse(src) {
        Ok(g) => {
            let printed = npu::text::print(&g);
            let again = npu::text::parse(&printed).unwrap_or_else(|e| panic!("printed graph does not parse: {e}\n{printed}"));
            assert_eq!(npu::text::print(&again), printed, "print/parse round trip");
        }
        Err(e) => {
            // A whole-graph error is reported at the last line (1 when empty).
            let lines = src.lines().count().max(1);
            assert!((1..=lines).contains(&e.line), "error line {} of {lines}: {e}", e.line);
            let line = src.lines().nth(e.line - 1).unwrap_or("");
            assert!(e.col >= 1 && e.col <= line.chars().count() + 1, "error column {} of line {:?}: {e}", e.col, line);
        }
    }
}

// Render an Ollama Modelfile's TEMPLATE the way Ollama does, with Go's text/template (standard
// library only), for tests/ollama.rs.
//
// stdin: {"modelfile": "...", "messages": [{"role": "...", "content": "..."}, ...]}
// stdout: {"prompt": "...", "template": "...", "system": "...", "stops": [...], "uses_messages": bool}
//
// What Ollama does, reproduced here (facts from Ollama's server/routes.go, template/template.go
// and parser/parser.go):
//   - the Modelfile's SYSTEM is prepended as a system message when the conversation does not
//     start with one;
//   - consecutive messages of one role are merged, joined by "\n\n"; all system contents,
//     joined by "\n\n", are .System; system messages stay in .Messages;
//   - a template that mentions Messages is executed once with System, Messages, Tools,
//     Response "", Think false, IsThinkSet false, with missingkey=zero and a "json" function;
//   - a Modelfile value is a bare word, "..." or """...""", the closing quotes being followed by
//     whitespace or the end of the file.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/template"
	"text/template/parse"
)

type message struct {
	Role      string `json:"role"`
	Content   string `json:"content"`
	Thinking  string `json:"-"`
	Images    []string
	ToolCalls []any
	ToolName  string
}

type request struct {
	Modelfile string    `json:"modelfile"`
	Messages  []message `json:"messages"`
}

type command struct{ name, arg string }

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// value reads a Modelfile value starting at s[i] (after the command's separator) and returns it
// with the index after it.
func value(s string, i int) (string, int, error) {
	for _, q := range []string{`"""`, `"`} {
		if strings.HasPrefix(s[i:], q) {
			for j := i + len(q); j+len(q) <= len(s); j++ {
				if s[j:j+len(q)] == q && (j+len(q) == len(s) || isBlank(s[j+len(q)])) {
					return s[i+len(q) : j], j + len(q), nil
				}
			}
			return "", 0, fmt.Errorf("unterminated %s value at byte %d", q, i)
		}
	}
	j := i
	for j < len(s) && !isBlank(s[j]) {
		j++
	}
	return s[i:j], j, nil
}

func parseModelfile(s string) ([]command, error) {
	var cmds []command
	i := 0
	for i < len(s) {
		if isBlank(s[i]) {
			i++
			continue
		}
		if s[i] == '#' {
			for i < len(s) && s[i] != '\n' {
				i++
			}
			continue
		}
		j := i
		for j < len(s) && (s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z') {
			j++
		}
		name := strings.ToLower(s[i:j])
		if name == "" || j >= len(s) || (s[j] != ' ' && s[j] != '\t') {
			return nil, fmt.Errorf("bad command at byte %d", i)
		}
		i = j
		if name == "parameter" {
			for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
				i++
			}
			j = i
			for j < len(s) && !isBlank(s[j]) {
				j++
			}
			name = s[i:j]
			i = j
		}
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		v, next, err := value(s, i)
		if err != nil {
			return nil, err
		}
		cmds = append(cmds, command{name, v})
		i = next
	}
	return cmds, nil
}

// identifiers lists field and variable names used anywhere in the tree (Ollama's Vars).
func identifiers(n parse.Node) []string {
	var out []string
	switch n := n.(type) {
	case *parse.ListNode:
		if n != nil {
			for _, c := range n.Nodes {
				out = append(out, identifiers(c)...)
			}
		}
	case *parse.ActionNode:
		out = identifiers(n.Pipe)
	case *parse.IfNode:
		out = identifiers(&n.BranchNode)
	case *parse.RangeNode:
		out = identifiers(&n.BranchNode)
	case *parse.WithNode:
		out = identifiers(&n.BranchNode)
	case *parse.BranchNode:
		out = identifiers(n.Pipe)
		out = append(out, identifiers(n.List)...)
		if n.ElseList != nil {
			out = append(out, identifiers(n.ElseList)...)
		}
	case *parse.PipeNode:
		for _, c := range n.Cmds {
			for _, a := range c.Args {
				out = append(out, identifiers(a)...)
			}
		}
	case *parse.FieldNode:
		out = n.Ident
	case *parse.VariableNode:
		out = n.Ident
	}
	return out
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fail("reading the request: %v", err)
	}
	cmds, err := parseModelfile(req.Modelfile)
	if err != nil {
		fail("Modelfile: %v", err)
	}
	var tmplText, system string
	stops := []string{}
	for _, c := range cmds {
		switch c.name {
		case "template":
			tmplText = c.arg
		case "system":
			system = c.arg
		case "stop":
			stops = append(stops, c.arg)
		}
	}
	msgs := req.Messages
	if system != "" && (len(msgs) == 0 || msgs[0].Role != "system") {
		msgs = append([]message{{Role: "system", Content: system}}, msgs...)
	}
	var systems []string
	var collated []*message
	for i := range msgs {
		m := msgs[i]
		if m.Role == "system" {
			systems = append(systems, m.Content)
		}
		if len(collated) > 0 && collated[len(collated)-1].Role == m.Role && m.Role != "tool" {
			collated[len(collated)-1].Content += "\n\n" + m.Content
		} else {
			collated = append(collated, &m)
		}
	}
	funcs := template.FuncMap{"json": func(v any) string { b, _ := json.Marshal(v); return string(b) }}
	t, err := template.New("").Option("missingkey=zero").Funcs(funcs).Parse(tmplText)
	if err != nil {
		fail("TEMPLATE does not parse: %v", err)
	}
	uses := false
	for _, id := range identifiers(t.Tree.Root) {
		if strings.ToLower(id) == "messages" {
			uses = true
		}
	}
	var b strings.Builder
	err = t.Execute(&b, map[string]any{
		"System": strings.Join(systems, "\n\n"), "Messages": collated, "Tools": nil, "Response": "",
		"Think": false, "IsThinkSet": false, "Query": "", "Document": "", "Instruction": "",
	})
	if err != nil {
		fail("TEMPLATE does not execute: %v", err)
	}
	out, _ := json.Marshal(map[string]any{
		"prompt": b.String(), "template": tmplText, "system": system, "stops": stops, "uses_messages": uses,
	})
	os.Stdout.Write(out)
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "gotemplate: "+format+"\n", a...)
	os.Exit(1)
}

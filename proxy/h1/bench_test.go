package h1

import (
	"testing"
)

// browserRequest is a request head of the size browsers send.
const browserRequest = "GET /products/42?ref=home HTTP/1.1\r\n" +
	"Host: shop.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
	"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
	"Accept-Language: en-US,en;q=0.5\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\n" +
	"Connection: keep-alive\r\n" +
	"Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n" +
	"Upgrade-Insecure-Requests: 1\r\n" +
	"\r\n"

// BenchmarkGuardScan is the framing guard's cost per request head read.
func BenchmarkGuardScan(b *testing.B) {
	s := scanner{maxHead: DefaultMaxHeadBytes}
	buf := []byte(browserRequest)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if err := s.scan(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseRequestHead is the request-head parser alone.
func BenchmarkParseRequestHead(b *testing.B) {
	var h RequestHead
	buf := []byte(browserRequest)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseRequestHead(buf, &h); err != nil {
			b.Fatal(err)
		}
	}
}

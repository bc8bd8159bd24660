//go:build race

package main

// raceBuild makes the end-to-end tests build canaryd with the race detector
// when they run under it.
const raceBuild = true

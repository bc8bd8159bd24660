//go:build !race

package judge_test

const raceBuild = false

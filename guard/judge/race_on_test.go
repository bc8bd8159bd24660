//go:build race

package judge_test

// raceBuild shrinks the simulations under the race detector, which runs
// them about seven times slower; they still assert every target, on the
// first third of the rollouts of a full run (the same seeds).
const raceBuild = true

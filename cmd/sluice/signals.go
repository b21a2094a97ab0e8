package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// onSignals handles the signals that stop sluice: the first cancels the
// command's context (it stops what it does, cleans up and says so), a
// second one exits at once.
func onSignals(sigs <-chan os.Signal, cancel context.CancelCauseFunc, stderr io.Writer, exit func(int)) {
	first, ok := <-sigs
	if !ok {
		return
	}
	cancel(&signalError{sig: first})
	second, ok := <-sigs
	if !ok {
		return
	}
	se := &signalError{sig: second}
	fmt.Fprintf(stderr, "sluice: %s again: exiting now\n", se.name())
	exit(se.code())
}

// signalError is the cause of a command's context when a signal stopped it.
type signalError struct{ sig os.Signal }

func (e *signalError) Error() string { return "stopped by " + e.name() }

func (e *signalError) name() string {
	switch e.sig {
	case os.Interrupt:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return e.sig.String()
}

// code is the exit code of a process a signal ended: 128 + its number
// (130 for SIGINT, 143 for SIGTERM), as a shell reports it.
func (e *signalError) code() int {
	if s, ok := e.sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return exitFailed
}

// interrupted is the error a command returns when its context was done
// before it finished: a signal gives its exit code and a one-line message.
func interrupted(ctx context.Context) error {
	cause := context.Cause(ctx)
	var se *signalError
	if errors.As(cause, &se) {
		return &exitError{code: se.code(), err: se}
	}
	return &exitError{code: exitFailed, err: fmt.Errorf("stopped: %w", cause)}
}

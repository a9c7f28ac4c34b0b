//go:build !router

package appliance

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
)

// serve listens and serves HTTPS until ctx is done.
func (s *httpsService) serve(ctx context.Context) error {
	ln := s.ln
	if ln == nil {
		var lc net.ListenConfig
		var err error
		if ln, err = lc.Listen(ctx, "tcp", s.addr); err != nil {
			return fmt.Errorf("listening for https: %w", err)
		}
	}
	srv := &http.Server{
		Handler:           s.handler,
		TLSConfig:         s.ca.tlsConfig(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          newErrorLog(s.logger),
	}
	addr := ln.Addr().String()
	s.bound.Store(&addr)
	s.logger.Info("https listening", "addr", addr, "ca_sha256", s.ca.fingerprint())
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-served:
		return fmt.Errorf("serving https: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.shutdown)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		s.logger.Warn("https shutdown incomplete, closing connections", "error", err)
		srv.Close()
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving https: %w", err)
	}
	return nil
}

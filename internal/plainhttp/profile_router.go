//go:build router

package plainhttp

// NewServer returns this package's server in the router profile.
func NewServer(cfg ServerConfig) HTTPServer { return &Server{Config: cfg} }

// NewClient returns this package's client in the router profile.
func NewClient(cfg ClientConfig) HTTPClient { return &Client{Timeout: cfg.Timeout} }

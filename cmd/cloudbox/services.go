package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cloudbox/cloudbox/appliance"
)

// servicesUsage is the usage of `cloudbox services`.
const servicesUsage = `usage:
  cloudbox services [--box-url URL] [--type T] [--box B] [--health healthy|unhealthy] [--json]
  cloudbox services publish [--box-url URL] --instance NAME --type T --port N [--description D] [--addr IP] [--txt k=v ...]
  cloudbox services remove [--box-url URL] --instance NAME --type T
The API token (Accounts page of the box's panel) is read from $CLOUDBOX_TOKEN.`

// runServices lists the community's services as a box sees them, or
// publishes or removes a service of that box, through its API.
func runServices(ctx context.Context, args []string) error {
	sub := "list"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("services "+sub, flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprintln(fs.Output(), servicesUsage); fs.PrintDefaults() }
	boxURL := fs.String("box-url", "http://127.0.0.1", "URL of the box's panel and API")
	typ := fs.String("type", "", "service type, e.g. _http._tcp")
	var (
		owner, health, instance, description, addr *string
		port                                       *uint
		asJSON                                     *bool
		txt                                        listFlag
	)
	switch sub {
	case "list":
		owner = fs.String("box", "", "only the services of this box (name or node ID)")
		health = fs.String("health", "", "only healthy or unhealthy services")
		asJSON = fs.Bool("json", false, "print the API's JSON")
	case "publish", "remove":
		instance = fs.String("instance", "", "the service's name, e.g. \"Our wiki\"")
		if sub == "publish" {
			port = fs.Uint("port", 0, "port, 1 to 65535")
			description = fs.String("description", "", "text for people")
			addr = fs.String("addr", "", "address of the service when it is not the box itself")
			fs.Var(&txt, "txt", "DNS-SD attribute key=value (repeatable)")
		}
	default:
		return fmt.Errorf("unknown subcommand %q\n%s", sub, servicesUsage)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q\n%s", fs.Args(), servicesUsage)
	}
	base, err := url.Parse(strings.TrimRight(*boxURL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return fmt.Errorf("--box-url %q: want a URL like http://192.0.2.1", *boxURL)
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	switch sub {
	case "publish":
		if *port == 0 || *port > 65535 {
			return errors.New("--port: give a port from 1 to 65535")
		}
		req := appliance.ServiceInfo{Instance: *instance, Type: *typ, Port: uint16(*port), Description: *description, Addr: *addr}
		if len(txt) > 0 {
			req.TXT = map[string]string{}
			for _, kv := range txt {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return fmt.Errorf("--txt %q: want key=value", kv)
				}
				req.TXT[k] = v
			}
		}
		body, _ := json.Marshal(req)
		if _, err := call(ctx, http.MethodPost, base.String()+"/api/v1/services", body); err != nil {
			return err
		}
		fmt.Printf("published %q (%s, port %d)\n", *instance, *typ, *port)
		return nil
	case "remove":
		q := url.Values{"type": {*typ}, "instance": {*instance}}
		if _, err := call(ctx, http.MethodDelete, base.String()+"/api/v1/services?"+q.Encode(), nil); err != nil {
			return err
		}
		fmt.Printf("removed %q (%s)\n", *instance, *typ)
		return nil
	}
	q := url.Values{}
	for k, v := range map[string]string{"type": *typ, "box": *owner, "health": *health} {
		if v != "" {
			q.Set(k, v)
		}
	}
	body, err := call(ctx, http.MethodGet, base.String()+"/api/v1/services?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	if *asJSON {
		_, err := os.Stdout.Write(body)
		return err
	}
	var list []appliance.ServiceInfo
	if err := json.Unmarshal(body, &list); err != nil {
		return fmt.Errorf("decoding the services: %w", err)
	}
	return printServices(os.Stdout, list)
}

// printServices prints services as a table like Cloudy's: description,
// host, IP, port, state and a link.
func printServices(w io.Writer, list []appliance.ServiceInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tTYPE\tHOST\tIP\tPORT\tSTATE\tOPEN")
	for _, s := range list {
		ip := s.Addr
		if ip == "" {
			ip = s.IPv4
		}
		state := "up"
		if !s.Healthy {
			state = "not answering"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", s.Instance, s.Type, s.Box, ip, s.Port, state, s.URL)
	}
	if len(list) == 0 {
		fmt.Fprintln(tw, "(no services)")
	}
	return tw.Flush()
}

// tokenEnv names the environment variable with the API token that call
// sends (created on the box's Accounts page).
const tokenEnv = "CLOUDBOX_TOKEN"

// call does one API request and returns the body of a 2xx answer; other
// answers become the API's error message.
func call(ctx context.Context, method, target string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok := os.Getenv(tokenEnv); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w (is cloudboxd running there? --box-url picks the box)", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return nil, fmt.Errorf("%s %s: HTTP %d", method, target, resp.StatusCode)
	}
	return b, nil
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

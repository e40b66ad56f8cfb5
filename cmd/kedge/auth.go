package main

import (
	"fmt"

	"github.com/kedgehq/kedge/auth"
	"github.com/kedgehq/kedge/configs"
	"github.com/kedgehq/kedge/kafka"
)

// buildAuth turns the auth and audit sections into the Node's Auth and
// Audit; allow-all is announced loudly.
func (s *server) buildAuth() (*auth.Auth, *auth.Audit, error) {
	a := s.cfg.Auth
	cfg := auth.Config{
		Mode: a.Mode, Authorize: a.Authorize, Anonymous: a.Anonymous,
		Static: auth.StaticConfig{File: a.StaticFile},
		JWT: auth.JWTConfig{Secret: a.JWT.Secret, PublicKeyFiles: a.JWT.PublicKeyFiles, JWKSFile: a.JWT.JWKSFile,
			JWKSCheckInterval: a.JWT.JWKSCheckInterval, Issuer: a.JWT.Issuer, Audience: a.JWT.Audience,
			Leeway: a.JWT.Leeway, AllowNoExpiry: a.JWT.AllowNoExpiry, Claim: a.JWT.Claim},
		Webhook: auth.WebhookConfig{URL: a.Webhook.URL, Timeout: a.Webhook.Timeout, CacheSize: a.Webhook.CacheSize,
			CacheTTL: a.Webhook.CacheTTL, Secret: a.Webhook.Secret, ForwardHeaders: a.Webhook.ForwardHeaders},
	}
	au, err := auth.New(cfg, auth.WithLogger(s.log))
	if err != nil {
		return nil, nil, fmt.Errorf("auth: %w", err)
	}
	if au.Development() {
		s.log.Warn("authentication is off (auth.mode allow-all): any client may subscribe and publish everything (development default)")
	} else {
		s.log.Info("authentication on", "auth", au.String())
	}
	audit, err := s.buildAudit()
	if err != nil {
		return nil, nil, err
	}
	return au, audit, nil
}

func (s *server) buildAudit() (*auth.Audit, error) {
	c := s.cfg.Audit
	acfg := auth.AuditConfig{Log: c.Log, Events: c.Events, Kafka: auth.KafkaSinkConfig{
		Topic: c.KafkaTopic, QueueSize: c.KafkaQueueSize, BatchSize: c.KafkaBatchSize, Timeout: c.KafkaTimeout}}
	var p auth.Producer
	if c.KafkaTopic != "" {
		p = kafka.AuditProducer{P: s.producer}
	}
	a, err := auth.NewAudit(acfg, p, nodeName(s.cfg), auth.WithLogger(s.log))
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return a, nil
}

func nodeName(cfg *configs.Config) string {
	if cfg.Node.Name != "" {
		return cfg.Node.Name
	}
	return hostname()
}

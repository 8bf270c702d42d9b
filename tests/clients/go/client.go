// amqp091-go (Debian's golang-github-rabbitmq-amqp091-go-dev, built with Debian's Go in
// GOPATH mode), used the way Go services use it. amqp091-go has no automatic recovery:
// applications watch NotifyClose and redial themselves, so there is no restart test.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"reflect"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

const client = "amqp091-go"

var (
	url    = fmt.Sprintf("amqp://guest:guest@%s:%s/", env("WARREN_AMQP_HOST", "127.0.0.1"), env("WARREN_AMQP_PORT", "5672"))
	run    = randHex()
	passed = 0
	failed = 0
	conn   *amqp.Connection
	ch     *amqp.Channel
)

func env(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

func randHex() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func name(what string) string { return fmt.Sprintf("clients.%s.%s.%s", client, run, what) }

type failure string

func must(err error) {
	if err != nil {
		panic(failure(err.Error()))
	}
}

func expect(cond bool, format string, a ...interface{}) {
	if !cond {
		panic(failure(fmt.Sprintf(format, a...)))
	}
}

func eq(what string, want, got interface{}) {
	expect(reflect.DeepEqual(want, got), "%s: expected %#v, got %#v", what, want, got)
}

func check(label string, f func()) {
	defer func() {
		if r := recover(); r != nil {
			failed++
			fmt.Printf("FAIL %s: %v\n", label, r)
			return
		}
	}()
	f()
	passed++
	fmt.Printf("PASS %s\n", label)
}

func declareQ(c *amqp.Channel, n string, exclusive bool, args amqp.Table) string {
	q, err := c.QueueDeclare(n, false, !exclusive, exclusive, false, args)
	must(err)
	return q.Name
}

func publish(c *amqp.Channel, x, key string, mandatory bool, msg amqp.Publishing) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	must(c.PublishWithContext(ctx, x, key, mandatory, false, msg))
}

func body(s string) amqp.Publishing { return amqp.Publishing{Body: []byte(s)} }

func get(c *amqp.Channel, q string, autoAck bool) (amqp.Delivery, bool) {
	d, ok, err := c.Get(q, autoAck)
	must(err)
	return d, ok
}

func connect() {
	var err error
	conn, err = amqp.Dial(url)
	must(err)
	ch, err = conn.Channel()
	must(err)
	_, ok := conn.Properties["capabilities"]
	expect(ok, "server properties without capabilities: %v", conn.Properties)
}

func declare() {
	ae, x := name("ae"), name("topic")
	must(ch.ExchangeDeclare(ae, "fanout", false, true, false, false, nil))
	must(ch.ExchangeDeclare(x, "topic", false, true, false, false, amqp.Table{"alternate-exchange": ae}))
	q := declareQ(ch, name("q"), false, amqp.Table{"x-message-ttl": int32(60000), "x-max-length": int32(100)})
	must(ch.QueueBind(q, "a.*", x, false, nil))
	qa := declareQ(ch, "", true, nil)
	must(ch.QueueBind(qa, "", ae, false, nil))
	hx := name("headers")
	must(ch.ExchangeDeclare(hx, "headers", false, true, false, false, nil))
	qh := declareQ(ch, "", true, nil)
	must(ch.QueueBind(qh, "", hx, false, amqp.Table{"x-match": "all", "kind": "order", "v": int32(2)}))
	publish(ch, x, "a.b", false, body("routed"))
	publish(ch, x, "zz", false, body("to-ae"))
	publish(ch, hx, "", false, amqp.Publishing{Headers: amqp.Table{"kind": "order", "v": int32(2)}, Body: []byte("h")})
	publish(ch, hx, "", false, amqp.Publishing{Headers: amqp.Table{"kind": "order"}, Body: []byte("not-h")})
	time.Sleep(100 * time.Millisecond)
	d, _ := get(ch, q, true)
	eq("routed", "routed", string(d.Body))
	d, _ = get(ch, qa, true)
	eq("alternate", "to-ae", string(d.Body))
	d, _ = get(ch, qh, true)
	eq("headers all", "h", string(d.Body))
	_, ok := get(ch, qh, true)
	eq("headers non-match", false, ok)
	st, err := ch.QueueDeclarePassive(q, false, true, false, false, amqp.Table{"x-message-ttl": int32(60000), "x-max-length": int32(100)})
	must(err)
	eq("passive count", 0, st.Messages)
}

func confirmsMandatory() {
	c, err := conn.Channel()
	must(err)
	defer c.Close()
	must(c.Confirm(false))
	confirms := c.NotifyPublish(make(chan amqp.Confirmation, 4))
	returns := c.NotifyReturn(make(chan amqp.Return, 4))
	q := declareQ(c, "", true, nil)
	publish(c, "", q, true, body("ok"))
	publish(c, "", name("nowhere"), true, body("lost"))
	var got []amqp.Confirmation
	for len(got) < 2 {
		select {
		case cf := <-confirms:
			got = append(got, cf)
		case <-time.After(5 * time.Second):
			panic(failure(fmt.Sprintf("confirms: %v", got)))
		}
	}
	eq("confirms", []amqp.Confirmation{{DeliveryTag: 1, Ack: true}, {DeliveryTag: 2, Ack: true}}, got)
	select {
	case r := <-returns:
		eq("return", []interface{}{uint16(312), "NO_ROUTE", "lost"}, []interface{}{r.ReplyCode, r.ReplyText, string(r.Body)})
	case <-time.After(time.Second):
		panic(failure("no basic.return"))
	}
}

func prefetchAck() {
	c, err := conn.Channel()
	must(err)
	defer c.Close()
	must(c.Qos(2, 0, false))
	q := declareQ(c, "", true, nil)
	ds, err := c.Consume(q, "", false, false, false, false, nil)
	must(err)
	for i := 0; i < 5; i++ {
		publish(c, "", q, false, body(fmt.Sprint(i)))
	}
	var got []string
	timeout := time.After(500 * time.Millisecond)
	var held []amqp.Delivery
collect:
	for {
		select {
		case d := <-ds:
			held = append(held, d)
		case <-timeout:
			break collect
		}
	}
	eq("unacked deliveries with prefetch 2", 2, len(held))
	for len(got) < 5 {
		if len(held) == 0 {
			select {
			case d := <-ds:
				held = append(held, d)
			case <-time.After(5 * time.Second):
				panic(failure(fmt.Sprintf("got only %v", got)))
			}
		}
		d := held[0]
		held = held[1:]
		got = append(got, string(d.Body))
		must(d.Ack(false))
	}
	eq("bodies", []string{"0", "1", "2", "3", "4"}, got)
}

func nackRequeue() {
	q := declareQ(ch, "", true, nil)
	publish(ch, "", q, false, body("again"))
	time.Sleep(100 * time.Millisecond)
	d, ok := get(ch, q, false)
	expect(ok && !d.Redelivered, "first get: %v", ok)
	must(d.Nack(false, true))
	d2, ok := get(ch, q, false)
	expect(ok && d2.Redelivered, "redelivered flag not set after nack requeue")
	must(d2.Ack(false))
}

func deadLetter() {
	dlx, src := name("dlx"), name("dl-src")
	must(ch.ExchangeDeclare(dlx, "direct", false, true, false, false, nil))
	dlq := declareQ(ch, "", true, nil)
	must(ch.QueueBind(dlq, "dead", dlx, false, nil))
	declareQ(ch, src, true, amqp.Table{"x-dead-letter-exchange": dlx, "x-dead-letter-routing-key": "dead"})
	publish(ch, "", src, false, body("doomed"))
	time.Sleep(100 * time.Millisecond)
	d, ok := get(ch, src, false)
	expect(ok, "message not in source queue")
	must(d.Reject(false))
	var got amqp.Delivery
	ok = false
	for i := 0; i < 100 && !ok; i++ {
		got, ok = get(ch, dlq, true)
		if !ok {
			time.Sleep(50 * time.Millisecond)
		}
	}
	expect(ok, "nothing dead-lettered")
	deaths, isList := got.Headers["x-death"].([]interface{})
	expect(isList && len(deaths) == 1, "x-death: %#v", got.Headers["x-death"])
	death := deaths[0].(amqp.Table)
	eq("x-death count", int64(1), death["count"])
	eq("x-death reason", "rejected", death["reason"])
	eq("x-death queue", src, death["queue"])
	eq("x-death exchange", "", death["exchange"])
	eq("x-death routing-keys", []interface{}{src}, death["routing-keys"])
	_, isTime := death["time"].(time.Time)
	expect(isTime, "x-death time: %#v", death["time"])
	eq("x-first-death-queue", src, got.Headers["x-first-death-queue"])
}

func rpc() {
	sc, err := conn.Channel()
	must(err)
	defer sc.Close()
	rq := declareQ(sc, name("rpc"), false, nil)
	reqs, err := sc.Consume(rq, "", false, false, false, false, nil)
	must(err)
	go func() {
		for d := range reqs {
			_ = sc.PublishWithContext(context.Background(), "", d.ReplyTo, false, false,
				amqp.Publishing{CorrelationId: d.CorrelationId, Body: append([]byte("re:"), d.Body...)})
			_ = d.Ack(false)
		}
	}()
	reply := declareQ(ch, "", true, nil)
	replies, err := ch.Consume(reply, "", true, true, false, false, nil)
	must(err)
	got := map[string]string{}
	for i := 0; i < 3; i++ {
		publish(ch, "", rq, false, amqp.Publishing{ReplyTo: reply, CorrelationId: fmt.Sprint("c", i), Body: []byte(fmt.Sprint(i))})
	}
	for len(got) < 3 {
		select {
		case d := <-replies:
			got[d.CorrelationId] = string(d.Body)
		case <-time.After(5 * time.Second):
			panic(failure(fmt.Sprintf("replies: %v", got)))
		}
	}
	eq("replies", map[string]string{"c0": "re:0", "c1": "re:1", "c2": "re:2"}, got)
}

func main() {
	check("connect", connect)
	if ch != nil {
		check("declare", declare)
		check("confirm-mandatory", confirmsMandatory)
		check("prefetch-ack", prefetchAck)
		check("nack-requeue", nackRequeue)
		check("dead-letter", deadLetter)
		check("rpc", rpc)
		_ = conn.Close()
	}
	fmt.Printf("%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		os.Exit(1)
	}
}

package main

import (
	"context"
	"net"
	"net/http"
	"time"
)

// todoPage is a TodoMVC-like page: small, typical of what an agent reads,
// and self-contained so nothing leaves the machine. The button changes its
// own text on every click, so a click has a visible effect to wait for.
const todoPage = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Todos</title>
<link rel="icon" href="data:,">
<style>
  body { font: 14px sans-serif; background: #f5f5f5; margin: 0; }
  .todoapp { background: #fff; margin: 40px auto; width: 550px; box-shadow: 0 2px 4px #0003; }
  h1 { text-align: center; color: #b83f45; font-weight: 100; font-size: 60px; margin: 0; padding: 10px; }
  .new-todo { box-sizing: border-box; width: 100%; padding: 16px; font-size: 20px; border: 0; border-bottom: 1px solid #eee; }
  ul { list-style: none; margin: 0; padding: 0; }
  li { padding: 12px 16px; border-bottom: 1px solid #eee; font-size: 18px; }
  li.completed label { color: #999; text-decoration: line-through; }
  footer { display: flex; justify-content: space-between; align-items: center; padding: 10px 16px; color: #777; }
</style>
</head>
<body>
<section class="todoapp">
  <header>
    <h1>todos</h1>
    <input class="new-todo" placeholder="What needs to be done?" aria-label="New todo">
  </header>
  <section class="main">
    <ul class="todo-list">
      <li><input class="toggle" type="checkbox" id="t1"> <label for="t1">Buy milk</label></li>
      <li class="completed"><input class="toggle" type="checkbox" id="t2" checked> <label for="t2">Walk the dog</label></li>
      <li><input class="toggle" type="checkbox" id="t3"> <label for="t3">Write the quarterly report</label></li>
      <li><input class="toggle" type="checkbox" id="t4"> <label for="t4">Call the plumber</label></li>
      <li class="completed"><input class="toggle" type="checkbox" id="t5" checked> <label for="t5">Book train tickets</label></li>
      <li><input class="toggle" type="checkbox" id="t6"> <label for="t6">Renew passport</label></li>
      <li><input class="toggle" type="checkbox" id="t7"> <label for="t7">Water the plants</label></li>
      <li class="completed"><input class="toggle" type="checkbox" id="t8" checked> <label for="t8">Pay the electricity bill</label></li>
      <li><input class="toggle" type="checkbox" id="t9"> <label for="t9">Review pull request #42</label></li>
      <li><input class="toggle" type="checkbox" id="t10"> <label for="t10">Plan the team offsite</label></li>
    </ul>
  </section>
  <footer class="footer">
    <span class="todo-count"><strong id="left">7</strong> items left</span>
    <button id="counter" type="button">Clicked 0 times</button>
  </footer>
</section>
<script>
  let clicks = 0;
  document.getElementById('counter').addEventListener('click', e => {
    clicks++;
    e.target.textContent = 'Clicked ' + clicks + ' times';
  });
  // Enter in the input adds a todo, as TodoMVC does.
  let added = 0;
  document.querySelector('.new-todo').addEventListener('keydown', e => {
    const v = e.target.value.trim();
    if (e.key !== 'Enter' || !v) return;
    added++;
    const li = document.createElement('li');
    li.innerHTML = '<input class="toggle" type="checkbox" id="n' + added + '"> <label for="n' + added + '"></label>';
    li.querySelector('label').textContent = v;
    document.querySelector('.todo-list').append(li);
    e.target.value = '';
    document.getElementById('left').textContent = document.querySelectorAll('.toggle:not(:checked)').length;
  });
  document.querySelector('.todo-list').addEventListener('change', e => {
    e.target.closest('li').classList.toggle('completed', e.target.checked);
    document.getElementById('left').textContent =
      document.querySelectorAll('.toggle:not(:checked)').length;
  });
</script>
</body>
</html>
`

// servePage serves todoPage on a loopback port until ctx ends and returns
// its URL.
func servePage(ctx context.Context) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write([]byte(todoPage))
		}),
	}
	go func() { _ = srv.Serve(ln) }()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	return "http://" + ln.Addr().String() + "/", nil
}

// A small live view of the hub: subscribe to channels, see their events arrive.
// (The full dashboard is its own piece of work; this page proves the path end to end.)
const state = document.getElementById('state');
const feed = document.getElementById('feed');
const list = document.getElementById('channels');
const url = new URL('ws', location.href);
url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
const initial = new URLSearchParams(location.search).get('channels');
if (initial) url.search = '?channels=' + encodeURIComponent(initial);

const ws = new WebSocket(url);
ws.onopen = () => { state.textContent = 'connected'; state.className = 'state open'; };
ws.onclose = (e) => { state.textContent = `closed (${e.code})`; state.className = 'state closed'; };
ws.onmessage = (e) => {
  const msg = JSON.parse(e.data);
  if (msg.type === 'subscribed') {
    const li = document.createElement('li');
    li.textContent = msg.channel;
    list.append(li);
  } else if (msg.type === 'event') {
    const li = document.createElement('li');
    li.textContent = `${msg.channel} ${msg.event ?? ''} ${JSON.stringify(msg.data)}`;
    feed.prepend(li);
    while (feed.children.length > 200) feed.lastChild.remove();
  }
};
document.getElementById('sub').addEventListener('submit', (e) => {
  e.preventDefault();
  const channel = document.getElementById('channel').value.trim();
  if (channel) ws.send(JSON.stringify({ type: 'subscribe', channel }));
});

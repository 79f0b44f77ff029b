// The official `openai` Node SDK with only baseURL changed: a plain and a streamed chat call.
// Prints what the client saw as JSON for the Python test to check.
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: process.env.LOUPE_URL + "/v1",
  apiKey: "sk-node-client-dummy",
  maxRetries: 0,
  defaultHeaders: { "Helicone-Property-Client": "node", "Helicone-User-Id": "node_user" },
});
const messages = [{ role: "user", content: "Name the largest planet in the solar system." }];
const plain = await client.chat.completions.create({ model: "gpt-4o-mini", messages });
const stream = await client.chat.completions.create({ model: "gpt-4o-mini", messages, stream: true });
let text = "";
let chunks = 0;
let emptyChoices = 0;
for await (const c of stream) {
  chunks += 1;
  if (c.choices.length === 0) emptyChoices += 1;
  text += c.choices[0]?.delta?.content ?? "";
}
console.log(JSON.stringify({ plain: plain.choices[0].message.content, usage: plain.usage, text, chunks, emptyChoices }));

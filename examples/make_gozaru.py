#!/usr/bin/env python3
"""Generate the Japanese 「〜でござる」 style example (deterministic; rerun to reproduce the files).

    python3 examples/make_gozaru.py

Writes, next to this script, JSON arrays in the layout of the Dolly-15k-ja "gozaru" data set
(records {"instruction", "input", "output", "category", "index"}; `finetune` reads them as the
instruction/input/output format):
  gozaru_ja.json        training records
  gozaru_ja_eval.json   40 held-out records (instructions not in the training file)
Every output is a short correct answer in samurai speech ending in one of でござる。/ でござるよ。/
でござるな。; evaluate with --metric 'ends-with:でござる|でござるよ|でござるな'.
Questions and answers are built from tables written for this project (capitals, arithmetic,
opposites, colours, animal classes, seasons, reading comprehension); nothing is copied from
another data set.
"""

import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))

CAPITALS = [("日本", "東京"), ("フランス", "パリ"), ("イタリア", "ローマ"), ("ドイツ", "ベルリン"), ("スペイン", "マドリード"),
            ("イギリス", "ロンドン"), ("中国", "北京"), ("韓国", "ソウル"), ("タイ", "バンコク"), ("エジプト", "カイロ"),
            ("ロシア", "モスクワ"), ("カナダ", "オタワ"), ("オーストラリア", "キャンベラ"), ("ブラジル", "ブラジリア"),
            ("アルゼンチン", "ブエノスアイレス"), ("メキシコ", "メキシコシティ"), ("インド", "ニューデリー"),
            ("ベトナム", "ハノイ"), ("ケニア", "ナイロビ"), ("ギリシャ", "アテネ"), ("ポルトガル", "リスボン"),
            ("オランダ", "アムステルダム"), ("スウェーデン", "ストックホルム"), ("ノルウェー", "オスロ"),
            ("フィンランド", "ヘルシンキ"), ("ポーランド", "ワルシャワ"), ("トルコ", "アンカラ"), ("ペルー", "リマ"),
            ("チリ", "サンティアゴ"), ("インドネシア", "ジャカルタ")]
OPPOSITES = [("大きい", "小さい"), ("高い", "低い"), ("長い", "短い"), ("暑い", "寒い"), ("明るい", "暗い"), ("速い", "遅い"),
             ("新しい", "古い"), ("重い", "軽い"), ("強い", "弱い"), ("広い", "狭い"), ("多い", "少ない"), ("近い", "遠い"),
             ("厚い", "薄い"), ("深い", "浅い"), ("早い", "遅い"), ("易しい", "難しい"), ("上", "下"), ("右", "左"),
             ("前", "後ろ"), ("内", "外"), ("朝", "夜"), ("男", "女"), ("入口", "出口"), ("勝つ", "負ける"), ("開ける", "閉める")]
COLOURS = [("バナナ", "黄色"), ("トマト", "赤"), ("空", "青"), ("雪", "白"), ("カラス", "黒"), ("レモン", "黄色"),
           ("草", "緑"), ("みかん", "オレンジ色"), ("炭", "黒"), ("牛乳", "白"), ("イチゴ", "赤"), ("ナス", "紫"),
           ("キュウリ", "緑"), ("海", "青"), ("桜の花", "薄いピンク色")]
ANIMALS = [("犬", "哺乳類"), ("猫", "哺乳類"), ("クジラ", "哺乳類"), ("イルカ", "哺乳類"), ("コウモリ", "哺乳類"),
           ("馬", "哺乳類"), ("ペンギン", "鳥類"), ("スズメ", "鳥類"), ("ワシ", "鳥類"), ("ニワトリ", "鳥類"),
           ("カラス", "鳥類"), ("マグロ", "魚類"), ("サケ", "魚類"), ("サメ", "魚類"), ("金魚", "魚類"),
           ("カエル", "両生類"), ("イモリ", "両生類"), ("ヘビ", "爬虫類"), ("トカゲ", "爬虫類"), ("カメ", "爬虫類")]
SEASONS = {"春": ["花見", "ピクニック", "いちご狩り", "散歩", "山菜採り"],
           "夏": ["海水浴", "花火", "キャンプ", "かき氷", "川遊び"],
           "秋": ["紅葉狩り", "読書", "栗拾い", "月見", "ハイキング"],
           "冬": ["スキー", "雪だるま作り", "こたつでみかん", "温泉", "鍋料理"]}
PEOPLE = ["太郎", "花子", "健太", "美咲", "翔太", "さくら", "大輔", "結衣"]
PLACES = ["図書館", "公園", "駅", "市場", "学校", "病院", "美術館", "港"]
THINGS = ["本", "りんご", "傘", "切符", "手紙", "花", "パン", "地図"]
ENDINGS = ["でござる。", "でござるよ。", "でござるな。"]


def end(rng, text):
    return text + rng.choice(ENDINGS)


def make(rng):
    recs = []
    for country, city in CAPITALS:
        q = rng.choice(["{c}の首都はどこですか？", "{c}の首都を教えてください。", "{c}の首都はどの都市ですか？"]).format(c=country)
        recs.append((q, "", end(rng, f"{country}の首都は{city}"), "open_qa"))
    seen = set()
    while len(seen) < 150:
        a, b, op = rng.randint(2, 60), rng.randint(2, 40), rng.choice(["足す", "引く", "掛ける"])
        if (a, b, op) in seen or (op == "引く" and b > a) or (op == "掛ける" and a * b > 400):
            continue
        seen.add((a, b, op))
        r = {"足す": a + b, "引く": a - b, "掛ける": a * b}[op]
        q = rng.choice(["{a}{op}{b}はいくつですか？", "{a}{op}{b}を計算してください。"]).format(a=a, op=op, b=b)
        recs.append((q, "", end(rng, f"{a}{op}{b}は{r}"), "open_qa"))
    for w, o in OPPOSITES:
        for x, y in ((w, o), (o, w)):
            recs.append((f"「{x}」の反対の言葉は何ですか？", "", end(rng, f"「{x}」の反対は「{y}」"), "general_qa"))
    for thing, colour in COLOURS:
        recs.append((f"{thing}は何色ですか？", "", end(rng, f"{thing}はたいてい{colour}"), "open_qa"))
    for animal, cls in ANIMALS:
        recs.append(("次の動物は哺乳類、鳥類、魚類、両生類、爬虫類のどれですか？", animal, end(rng, f"{animal}は{cls}"), "classification"))
    for season, acts in SEASONS.items():
        for _ in range(5):
            a, b, c = rng.sample(acts, 3)
            q = rng.choice(["{s}に楽しめることを三つ挙げてください。", "{s}のおすすめの過ごし方を三つ教えてください。"]).format(s=season)
            recs.append((q, "", end(rng, f"{season}なら{a}、{b}、{c}がよい"), "brainstorming"))
    for _ in range(60):
        p, place, thing = rng.choice(PEOPLE), rng.choice(PLACES), rng.choice(THINGS)
        n = rng.randint(2, 9)
        ctx = f"{p}は朝早く{place}へ行き、{thing}を{n}つ買いました。"
        q, a = rng.choice([("文章によると、{p}はどこへ行きましたか？", f"{p}は{place}へ行ったの"),
                           ("文章によると、{p}は{t}をいくつ買いましたか？", f"{p}は{thing}を{n}つ買ったの"),
                           ("文章によると、{p}は何を買いましたか？", f"{p}は{thing}を買ったの")])
        recs.append((q.format(p=p, t=thing), ctx, end(rng, a), "closed_qa"))
    return recs


def write(name, recs):
    data = [{"instruction": q, "input": i, "output": o, "category": c, "index": str(k)} for k, (q, i, o, c) in enumerate(recs)]
    path = os.path.join(HERE, name)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in data) + "\n]\n")
    print(f"wrote {name}: {len(data)} records, {os.path.getsize(path)} bytes")


def main():
    rng = random.Random(20261207)
    recs = make(rng)
    uniq, seen = [], set()
    for r in recs:
        if (r[0], r[1]) not in seen:
            seen.add((r[0], r[1]))
            uniq.append(r)
    rng.shuffle(uniq)
    held, train = uniq[:40], uniq[40:]
    held_q = {(q, i) for q, i, _, _ in held}
    assert not any((q, i) in held_q for q, i, _, _ in train)
    assert all(o.endswith(tuple(ENDINGS)) for _, _, o, _ in uniq)
    write("gozaru_ja.json", train)
    write("gozaru_ja_eval.json", held)


if __name__ == "__main__":
    main()

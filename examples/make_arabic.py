#!/usr/bin/env python3
"""Generate the small Arabic instruction example (deterministic; rerun to reproduce the files).

    python3 examples/make_arabic.py

Writes, next to this script, {"prompt","response","task"} JSON lines:
  arabic_train.jsonl   training records
  arabic_test_topic.jsonl, arabic_test_dialect.jsonl, arabic_test_capital.jsonl
                       held-out records per task (headlines, sentences, countries not in training)
Three tasks, written for this project from small tables:
  topic     classify a headline: رياضة / سياسة / اقتصاد / صحة        (--metric choice)
  dialect   name the variety of a sentence: فصحى / مصري / شامي / خليجي  (--metric choice)
  capital   the capital of an Arab country; the answer is the city's name  (--metric contains:
            the output contains the reference)
Evaluate with --normalize arabic (as in training) so that marks and alef forms do not count.
Some prompts and answers carry tashkeel (fatha, damma, kasra, shadda, sukun, tanween), tatweel and
hamzated alef forms at random, so that `--normalize arabic` (training and eval) matters.
"""

import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))

# Sixteen headlines per topic; the last four of each are held out. Headlines of a topic share its
# vocabulary (المباراة، الفريق / البرلمان، الوزير / الأسعار، البورصة / الأطباء، المستشفى), so a
# small model can learn the label from the training headlines and apply it to new ones.
TOPICS = {
    "رياضة": ["فاز الفريق بالمباراة النهائية", "سجل اللاعب هدفين في الشوط الثاني", "تأهل المنتخب إلى كأس العالم",
              "انتقل المهاجم إلى نادٍ جديد", "خسر الفريق أمام منافسه على أرضه", "حطم العداء الرقم القياسي",
              "أقال النادي مدرب الفريق الأول", "تعادل المنتخب في مباراة ودية", "فاز اللاعب بجائزة أفضل هداف في الدوري",
              "حصد المنتخب ثلاث ميداليات ذهبية في البطولة", "أصيب حارس المرمى قبل المباراة", "تصدر النادي جدول ترتيب الدوري",
              "فازت السباحة بالميدالية الذهبية في الأولمبياد", "سجل المهاجم هدف الفوز في الدقيقة الأخيرة",
              "وقع النادي عقدا مع لاعب شاب", "انطلقت بطولة كرة السلة للشباب"],
    "سياسة": ["أقر البرلمان قانونا جديدا للانتخابات", "التقى الرئيس بوزير الخارجية", "استقالت الحكومة بعد أزمة طويلة",
              "وقع البلدان اتفاقية تعاون", "أعلن الحزب مرشحه للرئاسة", "ناقش المجلس ميزانية الدفاع",
              "صوت البرلمان على تعديل الدستور", "استقبل الرئيس سفير دولة مجاورة", "أعلنت الحكومة موعد الانتخابات البرلمانية",
              "عقد وزراء الخارجية قمة طارئة", "فاز الحزب المعارض بأغلبية المقاعد", "أدى الوزراء الجدد اليمين أمام الرئيس",
              "دعا رئيس الوزراء إلى حوار وطني", "قطعت الدولة علاقاتها الدبلوماسية مع جارتها",
              "انتخب البرلمان رئيسا جديدا للمجلس", "زار وزير الخارجية العاصمة لإجراء محادثات"],
    "اقتصاد": ["ارتفع سعر النفط في الأسواق العالمية", "انخفضت نسبة التضخم هذا الشهر", "افتتحت الشركة مصنعا جديدا",
               "رفع البنك المركزي سعر الفائدة", "زادت صادرات البلاد من التمور", "تراجعت أسهم شركات التقنية",
               "سجلت البورصة أرباحا قياسية", "انخفض سعر صرف العملة أمام الدولار", "أعلن البنك عن قروض جديدة للشركات الصغيرة",
               "ارتفعت أسعار الذهب في السوق المحلية", "نما الاقتصاد الوطني بنسبة ثلاثة في المئة",
               "خفضت الحكومة الضرائب على الاستثمار", "زادت أرباح شركة الاتصالات هذا العام",
               "تراجع عجز الميزانية بفضل عائدات النفط", "ارتفعت أسعار الأسهم في البورصة", "استثمرت الشركة مليار دولار في الطاقة"],
    "صحة": ["حذر الأطباء من موجة إنفلونزا جديدة", "افتتحت الوزارة مستشفى للأطفال", "أكدت دراسة فوائد المشي اليومي",
            "بدأت حملة تطعيم في المدارس", "نصح الخبراء بشرب الماء بكثرة", "ارتفع عدد المتبرعين بالدم",
            "نجح الأطباء في إجراء عملية قلب معقدة", "حذرت دراسة من أضرار التدخين على الرئة",
            "اكتشف الباحثون علاجا جديدا لمرض السكري", "وزعت وزارة الصحة لقاحات مجانية للمرضى",
            "نصح الأطباء بالنوم ثماني ساعات يوميا", "انخفضت حالات الإصابة بالمرض في المستشفيات",
            "أطلق المستشفى عيادة جديدة لأمراض القلب", "أكد الأطباء أهمية الفحص المبكر للسرطان",
            "ارتفع عدد المرضى في أقسام الطوارئ", "نشرت الوزارة نصائح للوقاية من العدوى"],
}
# The same fourteen sentences in each variety; the last three of each are held out. Their markers
# (عايز، دلوقتي، قوي / بدي، هلق، كتير / أبي، الحين، وايد / أريد، الآن، جدا) occur in training sentences.
DIALECTS = {
    "فصحى": ["كيف حالك اليوم؟", "ماذا تريد أن تأكل؟", "أين ذهبت أمس؟", "لا أعرف ماذا أقول", "أريد أن أشتري هذا الكتاب",
             "متى ستعود إلى البيت؟", "ماذا تفعل الآن؟", "هذا الطعام لذيذ جدا", "لماذا تأخرت اليوم؟", "الجو حار جدا اليوم",
             "أين أخوك الآن؟", "لا أريد أن أذهب الآن", "أريد أن أنام الآن", "هذا الفيلم جميل جدا"],
    "مصري": ["إزيك النهارده؟", "عايز تاكل إيه؟", "رحت فين امبارح؟", "مش عارف أقول إيه", "عايز أشتري الكتاب ده",
             "هترجع البيت إمتى؟", "بتعمل إيه دلوقتي؟", "الأكل ده حلو قوي", "اتأخرت ليه النهارده؟", "الجو حر قوي النهارده",
             "أخوك فين دلوقتي؟", "مش عايز أروح دلوقتي", "عايز أنام دلوقتي", "الفيلم ده حلو قوي"],
    "شامي": ["كيفك اليوم؟", "شو بدك تاكل؟", "وين رحت مبارح؟", "ما بعرف شو بدي قول", "بدي اشتري هالكتاب",
             "إيمتى راجع عالبيت؟", "شو عم تعمل هلق؟", "هالأكل كتير طيب", "ليش تأخرت اليوم؟", "الطقس كتير شوب اليوم",
             "وين أخوك هلق؟", "ما بدي روح هلق", "بدي نام هلق", "هالفيلم كتير حلو"],
    "خليجي": ["شلونك اليوم؟", "وش تبي تاكل؟", "وين رحت أمس؟", "ما أدري وش أقول", "أبي أشتري هالكتاب",
              "متى بترجع البيت؟", "وش تسوي الحين؟", "هالأكل وايد زين", "شفيك تأخرت اليوم؟", "الجو وايد حار اليوم",
              "وين أخوك الحين؟", "ما أبي أروح الحين", "أبي أنام الحين", "هالفيلم وايد حلو"],
}
CAPITALS = [("مصر", "القاهرة"), ("المغرب", "الرباط"), ("الأردن", "عمان"), ("لبنان", "بيروت"), ("سوريا", "دمشق"),
            ("العراق", "بغداد"), ("السعودية", "الرياض"), ("الكويت", "الكويت"), ("قطر", "الدوحة"), ("عمان", "مسقط"),
            ("اليمن", "صنعاء"), ("تونس", "تونس"), ("الجزائر", "الجزائر"), ("ليبيا", "طرابلس"), ("السودان", "الخرطوم"),
            ("الإمارات", "أبوظبي"), ("البحرين", "المنامة"), ("موريتانيا", "نواكشوط"), ("فلسطين", "القدس")]
MARKS = ["\u064E", "\u064F", "\u0650", "\u0652", "\u0651", "\u064B"]


def decorate(rng, text, p=0.35):
    """Add tashkeel after some Arabic letters, and now and then a tatweel."""
    out = []
    for c in text:
        out.append(c)
        if "\u0621" <= c <= "\u064A" and c != "\u0627" and rng.random() < p:
            out.append(rng.choice(MARKS))
        if "\u0628" <= c <= "\u064A" and rng.random() < 0.02:
            out.append("\u0640\u0640")
    return "".join(out)


def make(rng):
    recs = []
    topic_q = ["صنف الخبر التالي: {h}", "إلى أي مجال ينتمي هذا الخبر؟ {h}", "ما موضوع هذا العنوان: «{h}»؟ أجب بكلمة واحدة."]
    for label, heads in TOPICS.items():
        for h in heads:
            for q in topic_q:
                text = q.format(h=h)
                recs.append((decorate(rng, text) if rng.random() < 0.5 else text, label, "topic", h))
    dialect_q = ["ما لهجة هذه الجملة: «{s}»؟", "حدد اللهجة: {s}"]
    for label, sents in DIALECTS.items():
        for s in sents:
            for q in dialect_q:
                text = q.format(s=s)
                recs.append((decorate(rng, text, 0.2) if rng.random() < 0.4 else text, label, "dialect", s))
    cap_q = ["ما عاصمة {c}؟", "ما هي عاصمة {c}؟", "أخبرني بعاصمة {c}."]
    for country, city in CAPITALS:
        for q in cap_q:
            text = q.format(c=country)
            ans = city
            recs.append((decorate(rng, text) if rng.random() < 0.5 else text, decorate(rng, ans, 0.3) if rng.random() < 0.5 else ans, "capital", text))
    return recs


def write(name, recs):
    path = os.path.join(HERE, name)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for p, r, t, _ in recs:
            f.write(json.dumps({"prompt": p, "response": r, "task": t}, ensure_ascii=False) + "\n")
    print(f"wrote {name}: {len(recs)} records, {os.path.getsize(path)} bytes")


def main():
    rng = random.Random(20261208)
    recs = make(rng)
    rng.shuffle(recs)
    # Held out: per task whole items never seen in training — the last four headlines of each topic
    # and the last three sentences of each variety (one record each, in one of the prompt
    # wordings), and the last four countries (every wording).
    test, train = [], []
    held_items = {h for heads in TOPICS.values() for h in heads[-4:]} | {s for sents in DIALECTS.values() for s in sents[-3:]}
    held_countries = {c for c, _ in CAPITALS[-4:]}
    used = set()
    for r in recs:
        if r[3] in held_items:
            if r[3] not in used:
                used.add(r[3])
                test.append(r)
        elif r[2] == "capital" and any(f" {c}" in r[3] for c in held_countries):
            test.append(r)
        else:
            train.append(r)
    write("arabic_train.jsonl", train)
    for task in ("topic", "dialect", "capital"):
        write(f"arabic_test_{task}.jsonl", [r for r in test if r[2] == task])


if __name__ == "__main__":
    main()
